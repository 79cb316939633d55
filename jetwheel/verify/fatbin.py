"""Read the CUDA fatbinaries embedded in an ELF file: which GPUs have SASS, which PTX can be JIT-ed.

A fatbin container starts with magic 0xBA55ED50 (u32), a version (u16), its header size (u16) and
the size of the entries that follow (u64). Each entry has a kind (1 = PTX, 2 = ELF cubin), its own
header size, the payload size, the PTX ISA or cubin version, the target arch (e.g. 87) and flags
(bit 0x2000 or 0x8000: compressed payload). nvcc puts containers in .nv_fatbin; some builds embed
them in other sections, so the whole file is scanned, in chunks, never loaded whole.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

MAGIC = struct.pack("<I", 0xBA55ED50)
KIND_PTX, KIND_SASS = 1, 2
COMPRESSED = 0x2000 | 0x8000
_CHUNK = 16 << 20


@dataclass(frozen=True)
class Entry:
    kind: str  # "sass" | "ptx"
    arch: int  # 87 for sm_87 / compute_87
    version: tuple[int, int]  # PTX ISA (major, minor) for PTX; cubin format version for SASS
    compressed: bool

    def label(self) -> str:
        return (
            f"sm_{self.arch}"
            if self.kind == "sass"
            else f"compute_{self.arch} (PTX ISA {self.version[0]}.{self.version[1]})"
        )


def _parse_container(buf: bytes, at: int) -> tuple[list[Entry], int] | None:
    if len(buf) < at + 16:
        return None
    _magic, version, header, size = struct.unpack_from("<IHHQ", buf, at)
    if version != 1 or header < 16 or size > len(buf) - at - header:
        return None
    entries, off, end = [], at + header, at + header + size
    while off + 48 <= end:
        kind, _ev, ehead, payload = struct.unpack_from("<HHIQ", buf, off)
        minor, major, arch = struct.unpack_from("<HHI", buf, off + 24)
        (flags,) = struct.unpack_from("<Q", buf, off + 40)
        if kind not in (KIND_PTX, KIND_SASS) or ehead < 48 or ehead + payload > end - off:
            return None
        entries.append(Entry("ptx" if kind == KIND_PTX else "sass", arch, (major, minor), bool(flags & COMPRESSED)))
        off += ehead + payload
    return entries, end


class Scanner:
    """Finds fatbin containers in a file's bytes fed in order, e.g. while the file is being
    extracted from a wheel, so the bytes are read once. Holds at most one window plus a container
    that straddles its end."""

    def __init__(self) -> None:
        self.found: list[Entry] = []
        self._buf = b""

    def feed(self, chunk: bytes) -> None:
        self._buf = self._buf + chunk if self._buf else chunk
        self._drain(final=False)

    def finish(self) -> list[Entry]:
        self._drain(final=True)
        return self.found

    def _drain(self, final: bool) -> None:
        buf, pos = self._buf, 0
        while (hit := buf.find(MAGIC, pos)) != -1:
            parsed = _parse_container(buf, hit)
            if parsed is None:
                if final or len(buf) - hit >= (64 << 20):
                    pos = hit + 4  # not a container (or a torn one at the end of the file)
                    continue
                break  # may straddle the window: keep it until more bytes arrive
            entries, pos = parsed
            self.found += entries
        if final:
            self._buf = b""
            return
        keep = buf.find(MAGIC, pos)
        self._buf = buf[keep if keep != -1 else max(pos, len(buf) - 3) :]


def scan(f: BinaryIO) -> list[Entry]:
    """Every fatbin entry in the file, in file order. Reads in 16 MiB windows."""
    scanner = Scanner()
    f.seek(0)
    while chunk := f.read(_CHUNK):
        scanner.feed(chunk)
    return scanner.finish()


# The newest PTX ISA each CUDA driver can JIT (from the PTX ISA release notes).
PTX_ISA_OF_CUDA = {
    "11.4": (7, 4),
    "11.8": (7, 8),
    "12.0": (8, 0),
    "12.1": (8, 1),
    "12.2": (8, 2),
    "12.3": (8, 3),
    "12.4": (8, 4),
    "12.5": (8, 5),
    "12.6": (8, 5),
    "12.8": (8, 7),
    "12.9": (8, 8),
    "13.0": (9, 0),
}


def runs_on(entries: list[Entry], cc: int, driver_cuda: str = "") -> tuple[bool, str]:
    """Whether a device of compute capability `cc` (87 for 8.7) finds a kernel image, and how.

    SASS for sm_XY runs on devices X.Z with Z >= Y (same major); PTX for compute_XY is JIT-compiled
    by the driver on any device >= X.Y, if the driver knows that PTX ISA version.
    """
    sass = [e for e in entries if e.kind == "sass" and e.arch // 10 == cc // 10 and e.arch <= cc]
    if sass:
        return True, f"SASS sm_{max(e.arch for e in sass)}"
    max_isa = PTX_ISA_OF_CUDA.get(driver_cuda)
    ptx = [e for e in entries if e.kind == "ptx" and e.arch <= cc]
    usable = [e for e in ptx if max_isa is None or e.version <= max_isa]
    if usable:
        return True, f"PTX compute_{max(e.arch for e in usable)} (JIT)"
    if ptx:
        newest = max(e.version for e in ptx)
        return False, (
            f"only PTX ISA {newest[0]}.{newest[1]}, newer than CUDA {driver_cuda}'s driver can JIT "
            f"({max_isa[0]}.{max_isa[1]})"
            if max_isa
            else ""
        )
    return False, ""
