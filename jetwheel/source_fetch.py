"""Where a build step's source comes from: the local source directory, then the index, then the
network (a git clone packed here, or the sdist URL), always checked against the recipe's sha256
pin. Also makes the archives an air-gapped LAN keeps on its index (`inv sources.fetch`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from .digest import sha256_file
from .errors import SourceError
from .index import wire
from .index.client import IndexClient, Progress
from .source_archives import Archive, archive_name, check_commit, check_pin, pack, unpack
from .stepsource import StepSource

CACHE = Path.home() / ".cache" / "jetwheel" / "sources"
SOURCES_ENV = "JETWHEEL_SOURCES"


@dataclass(frozen=True)
class FetchedSource:
    """A source tree laid out for a build, and where its bytes came from."""

    tree: Path
    sha256: str  # of the archive the tree was unpacked from ("" for a recipe's local tree)
    origin: str  # the file or URL it was taken from
    commit: str = ""  # the git commit, when a git checkout was packed here
    subs: tuple[tuple[str, str], ...] = ()  # (name, where its archive was taken from) per sub-source


def local_sources_dir() -> Path | None:
    """The local source directory $JETWHEEL_SOURCES names, if any."""
    value = os.environ.get(SOURCES_ENV, "")
    return Path(value) if value else None


def _download(name: str, url: str, dest: Path) -> None:
    tmp = dest.with_name(f".{dest.name}.part")
    try:
        with urllib.request.urlopen(url, timeout=300) as r, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f, 1 << 20)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise SourceError(f"{name}: download of {url} failed: {e}") from None
    os.replace(tmp, dest)


def _clone(name: str, src: StepSource, dest: Path) -> None:
    cmd = ["git", "clone", "--depth", "1", "--branch", src.ref]
    if src.submodules:
        cmd += ["--recurse-submodules", "--shallow-submodules"]
    done = subprocess.run([*cmd, src.url, str(dest)], capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        raise SourceError(f"{name}: git clone of {src.url} at {src.ref} failed: {last}")


def download_pinned(name: str, url: str, expected: str, out: Path, cache: Path) -> Archive:
    """An archive downloaded from `url`, checked against the pin; a checked download is kept in
    `cache` by its sha256."""
    cached = cache / expected if expected else None
    if cached is None or not cached.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = cache / f".{out.name}.download"
        _download(name, url, tmp)
        try:
            actual = check_pin(tmp, expected, name)
        except SourceError:
            tmp.unlink()
            raise
        cached = cache / actual
        os.replace(tmp, cached)
    if out != cached:
        shutil.copyfile(cached, out)
    return Archive(out, sha256_file(out), "")


def upstream_archive(name: str, pin: str, src: StepSource, out_dir: Path, cache: Path = CACHE) -> Archive:
    """The source archive from upstream (git clone + pack, or the sdist URL), checked against the pin;
    a checked download is kept in `cache` by its sha256."""
    out = out_dir / archive_name(name, pin)
    if src.kind == "url":
        return download_pinned(name, src.url, src.sha256, out, cache)
    with tempfile.TemporaryDirectory(prefix=f"jetwheel-{name}-clone-") as tmp_dir:
        checkout = Path(tmp_dir) / "src"
        _clone(name, src, checkout)
        archive = pack(checkout, f"{canonicalize_name(name)}-{pin}", out)
    check_commit(archive, src, name)
    check_pin(out, src.sha256, name)
    return archive


@dataclass(frozen=True)
class LocalArchive:
    """An archive in the local source directory."""

    path: Path

    @property
    def origin(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class IndexArchive:
    """An archive on the index, with the sha256 the index publishes for it."""

    client: IndexClient
    filename: str
    sha256: str

    @property
    def origin(self) -> str:
        return self.client.url + wire.PACKAGE.format(filename=self.filename)

    def download(self, expected: str, name: str, into: Path, progress: Progress | None = None) -> Path:
        """The file downloaded into the directory `into`, checked against the pin."""
        path = self.client.download(self.filename, into, progress)
        check_pin(path, expected, name)
        return path


def held(filename: str, client: IndexClient | None, local_dir: Path | None) -> LocalArchive | IndexArchive | None:
    """The lookup order every fetch follows before upstream (main sources and sub-sources, fetched or
    only located): the local source directory, then the index. None when neither has `filename`."""
    if local_dir is not None and (local_dir / filename).is_file():
        return LocalArchive(local_dir / filename)
    info = client.file_info(filename) if client is not None else None
    if client is None or info is None:
        return None
    return IndexArchive(client, filename, str(info.get("sha256", "")))


def locate(
    name: str, pin: str, src: StepSource, client: IndexClient | None = None, local_dir: Path | None = None
) -> str | None:
    """Where fetch_source would take a pinned archive from before going upstream, without fetching it."""
    if not src.sha256 or src.kind == "path":
        return None
    found = held(archive_name(name, pin), client, local_dir)
    return found.origin if found is not None else None


def from_local_or_index(
    name: str,
    filename: str,
    expected: str,
    dest: Path,
    client: IndexClient | None,
    local_dir: Path | None,
    cache: Path,
    progress: Progress | None = None,
) -> FetchedSource | None:
    """The archive unpacked at `dest` from the local source directory or the index, checked against
    the pin (a mismatch is an error, never skipped); None when neither has it."""
    found = held(filename, client, local_dir)
    if found is None:
        return None
    if isinstance(found, LocalArchive):
        check_pin(found.path, expected, name)
        unpack(found.path, dest)
    else:
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".index-", dir=cache) as tmp:
            unpack(found.download(expected, name, Path(tmp), progress), dest)
    return FetchedSource(dest, expected, found.origin)


def looked(client: IndexClient | None, local_dir: Path | None) -> str:
    return " or ".join(str(p) for p in (local_dir, client.url if client else None) if p is not None)


def fetch_source(
    name: str,
    pin: str,
    src: StepSource,
    dest: Path,
    client: IndexClient | None = None,
    local_dir: Path | None = None,
    cache: Path = CACHE,
    progress: Progress | None = None,
) -> FetchedSource:
    """Lay the step's source tree out at `dest` (a fresh directory the build may modify).

    A pinned source is taken from `local_dir`/<archive>, then the index's /packages/<archive>, then
    upstream; the first place that has the archive decides: a file there that does not match the
    pin is an error, never skipped. An unpinned source comes from upstream only (a file found
    locally or on the index for it is an error that prints its sha256 to pin)."""
    if src.kind == "path":
        shutil.copytree(
            src.path, dest, ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", "*.so")
        )
        return FetchedSource(dest, "", f"local tree {src.path}")
    filename = archive_name(name, pin)
    if not src.sha256:
        if unpinned := held(filename, client, local_dir):
            there, actual = (
                (unpinned.origin, sha256_file(unpinned.path))
                if isinstance(unpinned, LocalArchive)
                else (f"{filename} on the index", unpinned.sha256)
            )
            raise SourceError(
                f"{name}: {there} is there, but the recipe pins no sha256 to check it against; "
                f'add source.sha256 = "{actual}" if that is the source you trust'
            )
    elif fetched := from_local_or_index(name, filename, src.sha256, dest, client, local_dir, cache, progress):
        return fetched
    with tempfile.TemporaryDirectory(prefix=f"jetwheel-{canonicalize_name(name)}-") as tmp:
        try:
            archive = upstream_archive(name, pin, src, Path(tmp), cache)
        except SourceError as e:
            raise SourceError(
                f"{e} (and no {filename} in {looked(client, local_dir) or 'a source directory'})"
            ) from None
        unpack(archive.path, dest)
    return FetchedSource(dest, archive.sha256, src.url, archive.commit)


def make_archive(name: str, pin: str, src: StepSource, out_dir: Path, from_path: Path | None) -> Archive:
    """`inv sources.fetch`: the step's source archive in out_dir, from upstream or from a local
    checkout/archive, checked against the recipe's pins (the error names both hashes)."""
    if src.kind == "path":
        raise SourceError(f"{name}: its source is a local tree ({src.path}); there is nothing to fetch")
    out_dir.mkdir(parents=True, exist_ok=True)
    if from_path is None:
        try:
            return upstream_archive(name, pin, src, out_dir)
        except SourceError as e:
            raise SourceError(f"{e} (no way to upstream from here? pack a copy: --from CHECKOUT_OR_ARCHIVE)") from None
    if not from_path.exists():
        raise SourceError(f"{from_path}: no such file or directory")
    out = out_dir / archive_name(name, pin)
    if src.kind == "url":
        shutil.copyfile(from_path, out)
        archive = Archive(out, sha256_file(out), "")
    else:
        archive = pack(from_path, f"{canonicalize_name(name)}-{pin}", out)
        check_commit(archive, src, name)
    check_pin(out, src.sha256, name)
    return archive
