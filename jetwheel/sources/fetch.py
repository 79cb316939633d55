"""Where a build step's source comes from: the local source directory, then the index, then the
network (a git clone packed here, or the sdist URL), always checked against the recipe's sha256
pin. Also makes the archives an air-gapped LAN keeps on its index (`inv sources.fetch`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import canonicalize_name

from jetwheel.digest import sha256_file
from jetwheel.errors import SourceError
from jetwheel.index.client.client import IndexClient, Progress
from jetwheel.model.stepsource import StepSource
from jetwheel.sources.archives import Archive, archive_name, check_commit, check_pin, pack, unpack
from jetwheel.wire import TRUSTED


def download_cache() -> Path:
    """~/.cache/jetwheel/sources: checked upstream downloads by sha256, where the caller gives no cache."""
    return Path.home() / ".cache" / "jetwheel" / "sources"


@dataclass(frozen=True)
class FetchedSource:
    """A source tree laid out for a build, and where its bytes came from."""

    tree: Path
    sha256: str  # of the archive the tree was unpacked from ("" for a recipe's local tree)
    origin: str  # the file or URL it was taken from
    commit: str = ""  # the git commit, when a git checkout was packed here
    subs: tuple[tuple[str, str], ...] = ()  # (name, where its archive was taken from) per sub-source


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


def upstream_archive(name: str, pin: str, src: StepSource, out_dir: Path, cache: Path | None = None) -> Archive:
    """The source archive from upstream (git clone + pack, or the sdist URL), checked against the pin;
    a checked download is kept in `cache` (default: download_cache()) by its sha256."""
    out, cache = out_dir / archive_name(name, pin), cache or download_cache()
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
class Lookup:
    """Where a step's sources are looked for, resolved once and passed down: the local source
    directory, then the index, then upstream. `find` is the one place that order is written."""

    local_dir: Path | None = None  # local source archives (--sources, $JETWHEEL_SOURCES), tried first
    client: IndexClient | None = None  # the index's /packages/, tried second
    # checked upstream downloads by sha256, and the scratch of index downloads
    cache: Path = field(default_factory=download_cache)
    progress: Progress | None = None  # of index downloads

    def looked(self) -> str:
        """The places before upstream, for an error that found nothing there."""
        return " or ".join(str(p) for p in (self.local_dir, self.client.url if self.client else None) if p is not None)


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
        return self.client.package_url(self.filename)

    def download(self, expected: str, name: str, into: Path, progress: Progress | None = None) -> Path:
        """The file downloaded into the directory `into`, checked against the pin."""
        path = self.client.download(self.filename, into, progress)
        check_pin(path, expected, name)
        return path


@dataclass(frozen=True)
class Upstream:
    """Neither the source directory nor the index has the archive: upstream's URL (a git
    repository, an sdist, a sub-source's archive)."""

    url: str

    @property
    def origin(self) -> str:
        return self.url


Place = LocalArchive | IndexArchive | Upstream


def find(filename: str, upstream: str, lookup: Lookup) -> Place | None:
    """Where `filename` is taken from, the first place that has it: the local source directory, the
    index, then `upstream` (a URL; "" when there is none). None when nowhere. Every fetch, and every
    check of where a fetch would go, asks this."""
    if lookup.local_dir is not None and (lookup.local_dir / filename).is_file():
        return LocalArchive(lookup.local_dir / filename)
    info = lookup.client.file_info(filename) if lookup.client is not None else None
    # only a builder's or admin's file: anyone else's under this name is not the build's (the index
    # refuses such uploads; an older index may hold one)
    if lookup.client is not None and info is not None and info.get("published_by") in TRUSTED:
        return IndexArchive(lookup.client, filename, str(info.get("sha256", "")))
    return Upstream(upstream) if upstream else None


def locate(name: str, pin: str, src: StepSource, lookup: Lookup) -> Place | None:
    """Where fetch_source takes a git or url source's archive from, without fetching it."""
    return find(archive_name(name, pin), src.url, lookup)


def unpack_held(found: LocalArchive | IndexArchive, name: str, expected: str, dest: Path, lookup: Lookup) -> None:
    """The archive from the local source directory or the index unpacked at `dest`, checked against
    the pin first (a mismatch is an error, never skipped)."""
    if isinstance(found, LocalArchive):
        check_pin(found.path, expected, name)
        unpack(found.path, dest)
        return
    lookup.cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".index-", dir=lookup.cache) as tmp:
        unpack(found.download(expected, name, Path(tmp), lookup.progress), dest)


def fetch_source(name: str, pin: str, src: StepSource, dest: Path, lookup: Lookup) -> FetchedSource:
    """Lay the step's source tree out at `dest` (a fresh directory the build may modify).

    A pinned source is taken from where `find` says: the first place that has the archive decides,
    and a file there that does not match the pin is an error, never skipped. An unpinned source
    comes from upstream only (a file found locally or on the index for it is an error that prints
    its sha256 to pin)."""
    if src.kind == "path":
        shutil.copytree(
            src.path, dest, ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", "*.so")
        )
        return FetchedSource(dest, "", f"local tree {src.path}")
    found = locate(name, pin, src, lookup)
    if isinstance(found, LocalArchive | IndexArchive):
        if not src.sha256:
            raise _unpinned(name, found)
        unpack_held(found, name, src.sha256, dest, lookup)
        return FetchedSource(dest, src.sha256, found.origin)
    with tempfile.TemporaryDirectory(prefix=f"jetwheel-{canonicalize_name(name)}-") as tmp:
        try:
            archive = upstream_archive(name, pin, src, Path(tmp), lookup.cache)
        except SourceError as e:
            filename = archive_name(name, pin)
            raise SourceError(f"{e} (and no {filename} in {lookup.looked() or 'a source directory'})") from None
        unpack(archive.path, dest)
    return FetchedSource(dest, archive.sha256, src.url, archive.commit)


def _unpinned(name: str, found: LocalArchive | IndexArchive) -> SourceError:
    there, actual = (
        (found.origin, sha256_file(found.path))
        if isinstance(found, LocalArchive)
        else (f"{found.filename} on the index", found.sha256)
    )
    return SourceError(
        f"{name}: {there} is there, but the recipe pins no sha256 to check it against; "
        f'add source.sha256 = "{actual}" if that is the source you trust'
    )


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
