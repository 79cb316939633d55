"""A file's bytes read once, in chunks, never whole in memory: its sha256, or the chunks themselves
for a caller that hashes more than one way (the index's store) or copies as it hashes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20


def chunks(f: BinaryIO, size: int = CHUNK) -> Iterator[bytes]:
    """The rest of an open file, `size` bytes at a time."""
    while chunk := f.read(size):
        yield chunk


def sha256_file(path: Path) -> str:
    """The file's sha256, as hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in chunks(f):
            h.update(chunk)
    return h.hexdigest()
