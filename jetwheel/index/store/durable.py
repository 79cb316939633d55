"""Writing that is whole or nothing, for the index's store: a file staged and synced before the
rename that commits it, the directory synced after, a full disk turned into a refusal (DiskFull), and
the test that tells a staged file a killed writer left from one a live writer still holds."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from jetwheel.errors import DiskFull

FULL = (errno.ENOSPC, errno.EDQUOT)


def disk_full(e: OSError) -> DiskFull:
    return DiskFull(f"the index's disk is full ({e.strerror}); nothing was stored, retry when there is space")


@contextlib.contextmanager
def refusing_full() -> Iterator[None]:
    """A write that fails for want of space becomes the refusal disk_full names (DiskFull); any other
    fault passes through as it is."""
    try:
        yield
    except OSError as e:
        if e.errno in FULL:
            raise disk_full(e) from None
        raise


def write_staged(tmpdir: Path, data: bytes) -> Path:
    """`data` in a new file under tmpdir (same file system as the store), synced: ready to rename."""
    fd, name = tempfile.mkstemp(dir=tmpdir, prefix="derived-")
    try:
        os.fchmod(fd, 0o644)  # derived data is as public as the file (nginx's workers read it)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)


def fsync_path(path: Path) -> None:
    """Make a file's bytes, or a directory's entries (a rename into it), durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def staging(tmpdir: Path) -> Iterator[tuple[IO[bytes], Path]]:
    """A temp file under tmpdir to stream an upload into; always removed after. Locked (flock) for
    as long as it lives under its upload-* name (it is locked under a name of its own first):
    remove_abandoned removes an upload-* file exactly when no live writer holds it."""
    fd, name = tempfile.mkstemp(dir=tmpdir, prefix="new-", suffix=".part")
    tmp = Path(name).with_name("upload-" + Path(name).name[len("new-") :])
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(name, tmp)
    except BaseException:
        os.close(fd)
        os.unlink(name)
        raise
    try:
        with os.fdopen(fd, "wb") as f:
            yield f, tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def remove_abandoned(tmpdir: Path, before: float) -> int:
    """Remove the staged files under tmpdir that a killed writer left (see abandoned); how many."""
    n = 0
    for p in tmpdir.iterdir():
        with contextlib.suppress(OSError):  # gone meanwhile, a link, a directory: not ours to remove
            if abandoned(p, before):
                p.unlink()
                n += 1
    return n


def abandoned(path: Path, before: float) -> bool:
    """True for a staged file that no process holds locked: an upload-* file at once (its writer
    locks it before naming it so), any other one once it was last written before `before`."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        if not path.name.startswith("upload-") and os.fstat(fd).st_mtime >= before:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    finally:
        os.close(fd)


def nofollow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW)


def create_once(path: Path, data: bytes) -> None:
    """Create `path` (mode 0600) holding `data`, whole or not at all: written and synced under a
    temporary name, then linked to its name. The link fails where another process got there first:
    both then use the winner's file."""
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
