"""A build step's source: taken from a local source directory, then the index, then the network, and
always checked against the recipe's sha256 pin. Also makes the reproducible archives an air-gapped
LAN keeps on its index (`inv sources.fetch`, `inv sources.upload`).

A source archive is named `<name>-<pin>-src.tar.gz` wherever it lies (a local directory, the
index's /packages/). For a git source it is a reproducible tarball of the pinned tree, submodules
included: members sorted as GNU tar's --sort=name, one fixed mtime, owner 0, modes 0775 (directories,
executables) or 0664, GNU format, `gzip -n -6` (no name, no timestamp). Packing the same tree gives
the same bytes whether it came from a git checkout or from another such archive; an sdist (a `url`
source) is kept byte for byte."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from packaging.utils import canonicalize_name

from .errors import SourceError
from .index.client import IndexClient
from .stepsource import StepSource

CACHE = Path.home() / ".cache" / "jetwheel" / "sources"
# One mtime for every member: that of the archives in the project's shared/sources, so that an
# upstream tree packs to the same bytes whoever packs it (2025-03-01T00:00:00Z)
ARCHIVE_MTIME = 1740787200
SOURCES_ENV = "JETWHEEL_SOURCES"


@dataclass(frozen=True)
class FetchedSource:
    """A source tree laid out for a build, and where its bytes came from."""

    tree: Path
    sha256: str  # of the archive the tree was unpacked from ("" for a recipe's local tree)
    origin: str  # the file or URL it was taken from
    commit: str = ""  # the git commit, when a git checkout was packed here
    subs: tuple[tuple[str, str], ...] = ()  # (name, where its archive was taken from) per sub-source


@dataclass(frozen=True)
class Archive:
    path: Path
    sha256: str
    commit: str  # "" when the tree did not come from a git checkout


@dataclass(frozen=True)
class _Member:
    name: str  # path inside the tree, "/"-separated, no top directory
    kind: str  # file | dir | link
    executable: bool = False
    link: str = ""
    path: Path | None = None  # where a file's bytes are, for a tree on disk
    size: int = 0


def local_sources_dir() -> Path | None:
    """The local source directory $JETWHEEL_SOURCES names, if any."""
    value = os.environ.get(SOURCES_ENV, "")
    return Path(value) if value else None


def archive_name(name: str, pin: str) -> str:
    return f"{canonicalize_name(name)}-{pin}-src.tar.gz"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def check_pin(path: Path, expected: str, what: str) -> str:
    """The file's sha256; SourceError naming the file and both hashes when a pin disagrees."""
    actual = sha256_file(path)
    if expected and actual != expected:
        raise SourceError(f"{what}: {path} has sha256 {actual}, the recipe pins {expected}")
    return actual


# --- packing ---------------------------------------------------------------------------------------
def _git(checkout: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(checkout), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SourceError(f"git {' '.join(args[:2])} in {checkout} failed: {done.stderr.strip()[-200:]}")
    return done.stdout


def _tree_members(root: Path) -> Iterator[_Member]:
    """Every file (git-tracked ones, submodules included, for a checkout) and their directories."""
    if (root / ".git").exists():
        names = [n for n in _git(root, "ls-files", "-z", "--recurse-submodules").split("\0") if n]
        # a submodule left uninitialised is an empty directory in the tree, as in `git archive`
        gitlinks = [
            line.split("\t", 1)[1]
            for line in _git(root, "ls-files", "-z", "--stage").split("\0")
            if line.startswith("160000 ")
        ]
    else:
        names = [str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir() or not any(p.iterdir())]
        names = [n for n in names if ".git" not in Path(n).parts]
        gitlinks = []
    dirs: set[str] = set(gitlinks)
    for n in [*names, *gitlinks]:
        parts = n.split("/")
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
    for d in dirs:
        yield _Member(d, "dir")
    for n in names:
        p = root / n
        if p.is_symlink():
            yield _Member(n, "link", link=os.readlink(p))
        elif p.is_dir():
            yield _Member(n, "dir")
        elif p.is_file():
            yield _Member(n, "file", executable=os.access(p, os.X_OK), path=p, size=p.stat().st_size)


def _archive_members(tf: tarfile.TarFile) -> tuple[str, list[_Member]]:
    """The members of a source archive with its single top directory taken off, and that prefix."""
    members = tf.getmembers()
    tops = {m.name.split("/")[0] for m in members}
    top = next(iter(tops)) if len(tops) == 1 else ""
    prefix = f"{top}/" if top and any(m.isdir() and m.name.strip("/") == top for m in members) else ""
    out = []
    for m in members:
        full = m.name.strip("/")
        if prefix and full == top:
            continue
        name = full.removeprefix(prefix)
        if m.isdir():
            out.append(_Member(name, "dir"))
        elif m.issym():
            out.append(_Member(name, "link", link=m.linkname))
        elif m.isfile():
            out.append(_Member(name, "file", executable=bool(m.mode & 0o111), size=m.size))
    return prefix, out


def _tarinfo(top: str, m: _Member) -> tarfile.TarInfo:
    info = tarfile.TarInfo(f"{top}/{m.name}" if m.name else top)
    info.mtime = ARCHIVE_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if m.kind == "dir":
        info.type, info.mode = tarfile.DIRTYPE, 0o775
    elif m.kind == "link":
        info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, m.link
    else:
        info.mode, info.size = (0o775 if m.executable else 0o664), m.size
    return info


def _write(members: list[_Member], top: str, out: Path, read: Any) -> str:
    """Write the reproducible archive; `read(member)` opens a file member. Returns its sha256."""
    if shutil.which("gzip") is None:
        raise SourceError("gzip is not installed (the archives are compressed with `gzip -n -6`)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.part")
    # the order GNU tar's --sort=name gives: each directory's entries by name, depth first
    ordered = [_Member("", "dir"), *sorted(members, key=lambda m: m.name.split("/"))]
    with open(tmp, "wb") as f:
        gz = subprocess.Popen(["gzip", "-n", "-6"], stdin=subprocess.PIPE, stdout=f)
        assert gz.stdin is not None
        try:
            with tarfile.open(fileobj=gz.stdin, mode="w|", format=tarfile.GNU_FORMAT) as tar:
                for m in ordered:
                    if m.kind == "file":
                        with read(m) as data:
                            tar.addfile(_tarinfo(top, m), data)
                    else:
                        tar.addfile(_tarinfo(top, m))
        finally:
            gz.stdin.close()
            code = gz.wait()
    if code != 0:
        tmp.unlink(missing_ok=True)
        raise SourceError(f"gzip failed (exit {code}) writing {out}")
    os.replace(tmp, out)
    return sha256_file(out)


def pack(source: Path, top: str, out: Path) -> Archive:
    """Pack a git checkout, a directory or a source archive (tar, tar.gz) into a reproducible archive
    whose top directory is `top`."""
    if source.is_dir():
        commit = _git(source, "rev-parse", "HEAD").strip() if (source / ".git").exists() else ""
        members = list(_tree_members(source))
        return Archive(out, _write(members, top, out, lambda m: open(m.path, "rb")), commit)
    try:
        with tarfile.open(source) as tf:
            prefix, members = _archive_members(tf)

            def read(m: _Member) -> IO[bytes]:
                f = tf.extractfile(prefix + m.name)
                assert f is not None
                return f

            return Archive(out, _write(members, top, out, read), "")
    except (tarfile.TarError, OSError) as e:
        raise SourceError(f"{source}: not a git checkout, directory or readable source archive ({e})") from None


# --- fetching for a build ----------------------------------------------------------------------------
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


def check_commit(archive: Archive, src: StepSource, name: str) -> None:
    if src.commit and archive.commit and archive.commit != src.commit:
        raise SourceError(f"{name}: the checkout is at commit {archive.commit}, the recipe pins {src.commit}")


def unpack(archive: Path, dest: Path) -> None:
    extract = dest.parent / f".{dest.name}.extract"
    shutil.rmtree(extract, ignore_errors=True)
    try:
        with tarfile.open(archive) as tf:
            top = {m.name.split("/")[0] for m in tf.getmembers()}
            tf.extractall(extract, filter="data")
    except (tarfile.TarError, OSError) as e:
        raise SourceError(f"{archive}: cannot unpack ({e})") from None
    inner = extract / next(iter(top)) if len(top) == 1 and (extract / next(iter(top))).is_dir() else extract
    inner.rename(dest)
    shutil.rmtree(extract, ignore_errors=True)


def locate(
    name: str, pin: str, src: StepSource, client: IndexClient | None = None, local_dir: Path | None = None
) -> str | None:
    """Where fetch_source would take a pinned archive from before going upstream, without fetching it."""
    filename = archive_name(name, pin)
    if not src.sha256 or src.kind == "path":
        return None
    if local_dir is not None and (local_dir / filename).is_file():
        return str(local_dir / filename)
    if client is not None and client.file_info(filename) is not None:
        return f"{client.url}/packages/{filename}"
    return None


def from_local_or_index(
    name: str, filename: str, expected: str, dest: Path, client: IndexClient | None, local_dir: Path | None, cache: Path
) -> FetchedSource | None:
    """The archive unpacked at `dest` from the local source directory or the index, checked against
    the pin (a mismatch is an error, never skipped); None when neither has it."""
    local = local_dir / filename if local_dir is not None and (local_dir / filename).is_file() else None
    if local is not None:
        check_pin(local, expected, name)
        unpack(local, dest)
        return FetchedSource(dest, expected, str(local))
    if client is None or client.file_info(filename) is None:
        return None
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".index-", dir=cache) as tmp:
        path = client.download(filename, Path(tmp))
        check_pin(path, expected, name)
        unpack(path, dest)
    return FetchedSource(dest, expected, f"{client.url}/packages/{filename}")


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
        local = local_dir / filename if local_dir is not None and (local_dir / filename).is_file() else None
        on_index = client.file_info(filename) if client is not None else None
        if local or on_index:
            actual = sha256_file(local) if local else str(on_index["sha256"]) if on_index else ""
            raise SourceError(
                f"{name}: {local or filename + ' on the index'} is there, but the recipe pins no sha256 to check "
                f'it against; add source.sha256 = "{actual}" if that is the source you trust'
            )
    elif found := from_local_or_index(name, filename, src.sha256, dest, client, local_dir, cache):
        return found
    with tempfile.TemporaryDirectory(prefix=f"jetwheel-{canonicalize_name(name)}-") as tmp:
        try:
            archive = upstream_archive(name, pin, src, Path(tmp), cache)
        except SourceError as e:
            raise SourceError(
                f"{e} (and no {filename} in {looked(client, local_dir) or 'a source directory'})"
            ) from None
        unpack(archive.path, dest)
    return FetchedSource(dest, archive.sha256, src.url, archive.commit)


def unpack_members(archive: Path, names: set[str], dest: Path) -> Path:
    """Only the named files of a source archive (paths below its top directory) laid out at `dest`:
    enough to try a patch on a tree of thousands of files."""
    try:
        with tarfile.open(archive) as tf:
            prefix, members = _archive_members(tf)
            for m in members:
                if m.kind == "file" and m.name in names:
                    f = tf.extractfile(prefix + m.name)
                    assert f is not None
                    (dest / m.name).parent.mkdir(parents=True, exist_ok=True)
                    (dest / m.name).write_bytes(f.read())
    except (tarfile.TarError, OSError) as e:
        raise SourceError(f"{archive}: cannot unpack ({e})") from None
    dest.mkdir(parents=True, exist_ok=True)
    return dest


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
