"""Reproducible source archives: packing a tree (a git checkout, a directory, another archive)
into one, unpacking one, and checking one against the recipe's pins.

A source archive is named `<name>-<pin>-src.tar.gz` wherever it lies (a local directory, the
index's /packages/). For a git source it is a reproducible tarball of the pinned tree, submodules
included: members sorted as GNU tar's --sort=name, one fixed mtime, owner 0, modes 0775 (directories,
executables) or 0664, GNU format, `gzip -n -6` (no name, no timestamp). Packing the same tree gives
the same bytes whether it came from a git checkout or from another such archive; an sdist (a `url`
source) is kept byte for byte. Where an archive is taken from is source_fetch.py's job."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from packaging.utils import canonicalize_name

from jetwheel.digest import sha256_file
from jetwheel.errors import SourceError
from jetwheel.model.stepsource import StepSource

# One mtime for every member: that of the archives in the project's shared/sources, so that an
# upstream tree packs to the same bytes whoever packs it (2025-03-01T00:00:00Z)
ARCHIVE_MTIME = 1740787200


@dataclass(frozen=True)
class Archive:
    path: Path
    sha256: str
    commit: str  # "" when the tree did not come from a git checkout


@dataclass(frozen=True)
class _Member:
    name: str  # path inside the tree, "/"-separated, no top directory
    kind: Literal["file", "dir", "link"]
    executable: bool = False
    link: str = ""
    path: Path | None = None  # where a file's bytes are, for a tree on disk
    size: int = 0


def archive_name(name: str, pin: str) -> str:
    return f"{canonicalize_name(name)}-{pin}-src.tar.gz"


def check_pin(path: Path, expected: str, what: str) -> str:
    """The file's sha256; SourceError naming the file and both hashes when a pin disagrees."""
    actual = sha256_file(path)
    if expected and actual != expected:
        raise SourceError(f"{what}: {path} has sha256 {actual}, the recipe pins {expected}")
    return actual


def check_commit(archive: Archive, src: StepSource, name: str) -> None:
    if src.commit and archive.commit and archive.commit != src.commit:
        raise SourceError(f"{name}: the checkout is at commit {archive.commit}, the recipe pins {src.commit}")


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
