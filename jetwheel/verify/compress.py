"""Inflate and gzip with ISA-L when it is installed (python-isal: about twice zlib's speed, and it
releases the GIL so members inflate in parallel threads), else with the standard library."""

from __future__ import annotations

import gzip as _gzip
import zlib as _zlib
from typing import Any

_igzip: Any
_isal_zlib: Any
try:
    from isal import igzip as _igzip
    from isal import isal_zlib as _isal_zlib
except ImportError:  # pragma: no cover - depends on the environment
    _igzip = _isal_zlib = None

ENGINE = "isal" if _isal_zlib is not None else "zlib"


def raw_inflater() -> Any:
    """A decompressobj for a raw deflate stream (a zip member's data)."""
    return (_isal_zlib or _zlib).decompressobj(-15)


def gzip(data: bytes) -> bytes:
    # level 1: facts are written on the cold path; they compress about 6x even so
    if _igzip is not None:
        return bytes(_igzip.compress(data, compresslevel=1, mtime=0))
    return _gzip.compress(data, compresslevel=1, mtime=0)


def gunzip(data: bytes, limit: int = 0) -> bytes:
    """The inflated bytes; with a `limit`, ValueError past it (a small gzip can inflate to gigabytes)
    without ever holding more than the limit."""
    if not limit:
        return bytes((_igzip or _gzip).decompress(data))
    inflater = (_isal_zlib or _zlib).decompressobj(31)  # 31: a gzip header and trailer
    try:
        out = inflater.decompress(data, limit + 1)
    except (_zlib.error, getattr(_isal_zlib, "error", _zlib.error)) as e:
        raise ValueError(f"not gzip data ({e})") from None
    if len(out) > limit:
        raise ValueError(f"inflates to more than {limit >> 20} MiB")
    return bytes(out)
