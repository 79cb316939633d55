"""The local fact cache: a wheel's facts (gzip'd JSON, see wheel.py) stored under its sha256, so a
wheel is inflated once per machine; and a memo of each file's sha256 under its stat, so a second
verify of the same file reads none of its bytes.

Layout under the root (~/.cache/jetwheel/facts, $JETWHEEL_FACTS, or a directory passed in):
`v<FORMAT>/<sha256[:2]>/<sha256>.json.gz`, and `stat/<key>` holding a sha256, the key hashing the
file's path, size, mtime, inode and device (as make and pip trust a file's stat). Entries are
written to a temporary name and renamed, so readers never see half an entry; a format change
reads a new directory and never the old one."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from jetwheel.digest import sha256_file
from jetwheel.verify.wheel import FORMAT, Wheel, from_bytes


def default_root() -> Path:
    """~/.cache/jetwheel/facts: where no root is given ($JETWHEEL_FACTS reaches here from the
    workflow's settings, as a root)."""
    return Path.home() / ".cache" / "jetwheel" / "facts"


def stat_key(real: str, st: os.stat_result) -> str:
    """A name for this very file as it is now (its resolved path and stat): a cache entry under it
    is stale the moment the file is replaced or changed in place."""
    key = f"{real}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\0{st.st_dev}"
    return hashlib.blake2b(key.encode(), digest_size=20).hexdigest()


class FactCache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or default_root()

    def _memo(self, path: Path) -> Path:
        return self.root / "stat" / stat_key(str(path.resolve()), path.stat())

    def remembered_sha256(self, path: Path) -> str | None:
        """The file's sha256 if it was computed for this very file (same stat) before; reads none of it."""
        try:
            known = self._memo(path).read_text().strip()
        except OSError:
            return None
        return known if len(known) == 64 else None

    def sha256(self, path: Path) -> str:
        """The file's sha256: remembered under its stat, else computed (and remembered)."""
        known = self.remembered_sha256(path)
        if known is not None:
            return known
        memo = self._memo(path)
        sha256 = sha256_file(path)
        with contextlib.suppress(OSError):  # a read-only cache: the next verify hashes the file again
            write_atomically(memo, sha256.encode())
        return sha256

    def _entry(self, sha256: str) -> Path:
        return self.root / f"v{FORMAT}" / sha256[:2] / f"{sha256}.json.gz"

    def get(self, sha256: str) -> Wheel | None:
        try:
            wheel = from_bytes(self._entry(sha256).read_bytes())
        except (OSError, ValueError):
            return None
        return wheel if wheel.sha256 == sha256 else None

    def put(self, wheel: Wheel, data: bytes | None = None) -> None:
        """Store the wheel's facts (`data`: their bytes, when already encoded). A read-only or full
        cache only costs the next verify its time, so errors are not raised."""
        with contextlib.suppress(OSError):
            write_atomically(self._entry(wheel.sha256), data or wheel.to_bytes())


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
