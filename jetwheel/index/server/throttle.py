"""The throttle on failed logins, one state for every worker process of the index.

Failed logins are counted per client address in a small fixed-size file under the store's state
directory (.jetwheel/throttle), mapped into each worker and changed under flock, the store's own
way of locking across processes. A file, not memory shared at fork: workers started by fork and a
second `index.serve` on the same store count together, a worker that restarts keeps the count, and
nothing has to outlive the parent to hold it. The file is a keyed hash table (BLAKE2b with a random
key written in its header) of SETS x WAYS slots: a client cannot choose addresses that land in
another's set, and the oldest entry of a full set is the one forgotten. Times are wall-clock seconds
(time.time()): monotonic clocks are not comparable across a reboot, and the file outlives one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import mmap
import os
import secrets
import struct
from collections.abc import Iterator
from pathlib import Path

from jetwheel.errors import StoreError
from jetwheel.index.store.durable import create_once

THROTTLE = "throttle"  # its name in the store's state directory
MAGIC = b"jetwheel-throttle-1\0"
HEADER = 64  # MAGIC, then the 16-byte hash key
KEY = slice(len(MAGIC), len(MAGIC) + 16)
SLOT = struct.Struct("<16sId")  # the address's keyed digest, failures, start of the window
SETS, WAYS = 2048, 4
SIZE = HEADER + SETS * WAYS * SLOT.size


def _create(path: Path) -> None:
    """The empty table, created whole (a worker that loses the race uses the winner's file)."""
    create_once(path, (MAGIC + secrets.token_bytes(16)).ljust(HEADER, b"\0") + bytes(SIZE - HEADER))


class SharedThrottle:
    """Failed logins per client address: past `limit` within `window` seconds, the address must
    wait until the window ends. The same answers in every process that opens `path`."""

    def __init__(self, path: Path, limit: int = 10, window: float = 60.0) -> None:
        self.limit, self.window = limit, window
        if not path.exists():
            _create(path)
        self._file = open(path, "r+b")  # noqa: SIM115 - held for the server's life, mapped
        if os.fstat(self._file.fileno()).st_size != SIZE:
            self._file.close()
            raise StoreError(f"{path} is not a throttle table: remove it and restart")
        self._map = mmap.mmap(self._file.fileno(), SIZE)
        if self._map[: len(MAGIC)] != MAGIC:
            raise StoreError(f"{path} is not a throttle table: remove it and restart")
        self._key = bytes(self._map[KEY])

    def close(self) -> None:
        self._map.close()
        self._file.close()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fcntl.flock(self._file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._file, fcntl.LOCK_UN)

    def _slot(self, address: str, now: float) -> tuple[int, bytes, int, float]:
        """(offset, digest, failures, start) of the address's slot: its own, else the one to reuse
        (an empty or expired one, else the oldest of its set) with no failures."""
        digest = hashlib.blake2b(address.encode("utf-8", "replace"), key=self._key, digest_size=16).digest()
        first = HEADER + (int.from_bytes(digest[:4], "little") % SETS) * WAYS * SLOT.size
        victim, victim_start = first, float("inf")
        for offset in range(first, first + WAYS * SLOT.size, SLOT.size):
            seen, count, start = SLOT.unpack_from(self._map, offset)
            if seen == digest:
                if now >= start + self.window:
                    return offset, digest, 0, now
                return offset, digest, count, start
            stale = count == 0 or now >= start + self.window
            if stale or start < victim_start:
                victim, victim_start = offset, -1.0 if stale else start
        return victim, digest, 0, now

    def wait(self, address: str, now: float) -> float:
        """Seconds the address must wait before its next login attempt (0: it may try now)."""
        with self._locked():
            _, _, count, start = self._slot(address, now)
        return start + self.window - now if count >= self.limit else 0.0

    def failed(self, address: str, now: float) -> None:
        with self._locked():
            offset, digest, count, start = self._slot(address, now)
            SLOT.pack_into(self._map, offset, digest, count + 1, start)
