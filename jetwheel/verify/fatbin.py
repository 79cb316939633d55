"""Read the CUDA fatbinaries embedded in an ELF file: which GPUs have SASS, which PTX can be JIT-ed.

A fatbin container starts with magic 0xBA55ED50 (u32), a version (u16), its header size (u16) and
the size of the entries that follow (u64). Each entry has a kind (1 = PTX, 2 = ELF cubin), its own
header size, the payload size, the PTX ISA or cubin version, the target arch (e.g. 87) and flags
(bit 0x2000 or 0x8000: compressed payload). nvcc puts containers in .nv_fatbin; some builds embed
them in other sections, so the whole file is scanned, as it streams, never loaded whole.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO, Literal

MAGIC = struct.pack("<I", 0xBA55ED50)
KIND_PTX, KIND_SASS = 1, 2
COMPRESSED = 0x2000 | 0x8000
_CHUNK = 16 << 20
_MAX_HEADER = 4096  # nvcc writes 16; a larger value is not a container


EntryKind = Literal["sass", "ptx"]  # machine code for one architecture, or PTX the driver compiles


@dataclass(frozen=True)
class Entry:
    kind: EntryKind
    arch: int  # 87 for sm_87 / compute_87
    version: tuple[int, int]  # PTX ISA (major, minor) for PTX; cubin format version for SASS
    compressed: bool

    def label(self) -> str:
        return (
            f"sm_{self.arch}"
            if self.kind == "sass"
            else f"compute_{self.arch} (PTX ISA {self.version[0]}.{self.version[1]})"
        )


def _container(buf: bytes, at: int) -> tuple[int, int] | None:
    """(header size, size of the entries) if `buf[at:]` starts a plausible container whose first
    entry header is in `buf`; None if it is not one."""
    _magic, version, header, size = struct.unpack_from("<IHHQ", buf, at)
    if version != 1 or header < 16 or size < 48 or _entry(buf, at + header, size) is None:
        return None
    return header, size


def _entry(buf: bytes, off: int, room: int) -> tuple[Entry, int] | None:
    """The entry whose header starts at `off` and its total length, or None if it is not one."""
    kind, _ev, ehead, payload = struct.unpack_from("<HHIQ", buf, off)
    minor, major, arch = struct.unpack_from("<HHI", buf, off + 24)
    (flags,) = struct.unpack_from("<Q", buf, off + 40)
    if kind not in (KIND_PTX, KIND_SASS) or ehead < 48 or ehead + payload > room:
        return None
    return Entry("ptx" if kind == KIND_PTX else "sass", arch, (major, minor), bool(flags & COMPRESSED)), ehead + payload


class Scanner:
    """Finds fatbin containers in a file's bytes fed in order (while the file is being inflated out
    of a wheel, so its bytes are read once). Entry headers are parsed as they stream by and their
    payloads skipped, so it holds only a few bytes between calls; `spans` lists each container's
    [start, end) in the file, for the caller to forget those bytes."""

    def __init__(self) -> None:
        self.found: list[Entry] = []
        self.spans: list[tuple[int, int]] = []
        self._tail = b""
        self._base = 0  # file offset of _tail[0]
        self._end = 0  # end of the container being read (0: searching)
        self._next = 0  # file offset of its next entry header
        self._pending: list[Entry] = []

    def feed(self, chunk: bytes) -> None:
        data = self._tail + chunk if self._tail else chunk
        start, n, pos, keep = self._base, len(data), 0, len(data)
        while True:
            if self._end:
                at = self._next - start
                if at > n:  # inside a payload
                    break
                if self._next >= self._end:
                    self.found += self._pending
                    self._pending, self._end, pos = [], 0, at
                    continue
                if at + 48 > n:
                    keep = at
                    break
                got = _entry(data, at, self._end - self._next)
                if got is None:  # not a container after all: resume searching here
                    self._pending, self._end, pos = [], 0, at
                    continue
                self._pending.append(got[0])
                self._next += got[1]
                continue
            if pos >= n:
                keep = n
                break
            hit = data.find(MAGIC, pos)
            if hit == -1:
                keep = max(pos, n - 3)  # a magic may straddle the next chunk
                break
            if hit + 16 > n:
                keep = hit
                break
            version, header = struct.unpack_from("<HH", data, hit + 4)
            if version != 1 or not 16 <= header <= _MAX_HEADER:
                pos = hit + 4
                continue
            if hit + header + 48 > n:  # its first entry header must be here to judge it
                keep = hit
                break
            found = _container(data, hit)
            if found is None:
                pos = hit + 4
                continue
            self._end, self._next = start + hit + found[0] + found[1], start + hit + found[0]
            self.spans.append((start + hit, self._end))
        self._tail = data[keep:]
        self._base = start + keep

    def finish(self) -> list[Entry]:
        """Every complete container's entries (a container torn by the end of the file is not one)."""
        self._tail, self._pending = b"", []
        return self.found


def scan(f: BinaryIO) -> list[Entry]:
    """Every fatbin entry in the file, in file order."""
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


# Tegra (Jetson) SMs: 5.3 Nano/TX1, 6.2 TX2, 7.2 Xavier, 8.7 Orin, and Thor (10.1 in CUDA 12.8-12.9,
# renamed 11.0 in CUDA 13). The CUDA Programming Guide: binary compatibility across minor versions
# "is supported only for the desktop. It is not supported for Tegra. Also, the binary compatibility
# between desktop and Tegra is not supported."
TEGRA = {53: "TX1/Nano", 62: "TX2", 72: "Xavier", 87: "Orin", 101: "Thor", 110: "Thor"}


def sass_runs(sass: int, cc: int) -> bool:
    """Whether SASS built for sm_`sass` runs on a device of compute capability `cc`: on a Tegra GPU
    (or Tegra SASS) only the exact SM; on desktop GPUs the same major and a minor no higher."""
    if sass in TEGRA or cc in TEGRA:
        return sass == cc
    return sass // 10 == cc // 10 and sass <= cc


def runs_on(entries: list[Entry], cc: int, driver_cuda: str = "") -> tuple[bool, str]:
    """Whether a device of compute capability `cc` (87 for 8.7) finds a kernel image, and how (or,
    when it does not, why: the rule a same-major SASS entry broke, or the PTX ISA too new).

    SASS follows `sass_runs`; PTX for compute_XY is JIT-compiled by the driver on any device >= X.Y,
    if the driver knows that PTX ISA version.
    """
    sass = [e for e in entries if e.kind == "sass" and sass_runs(e.arch, cc)]
    if sass:
        return True, f"SASS sm_{max(e.arch for e in sass)}"
    max_isa = PTX_ISA_OF_CUDA.get(driver_cuda)
    ptx = [e for e in entries if e.kind == "ptx" and e.arch <= cc]
    usable = [e for e in ptx if max_isa is None or e.version <= max_isa]
    if usable:
        return True, f"PTX compute_{max(e.arch for e in usable)} (JIT)"
    reasons = [_tegra_reason(sorted({e.arch for e in entries if e.kind == "sass" and e.arch // 10 == cc // 10}), cc)]
    if ptx and max_isa:
        newest = max(e.version for e in ptx)
        reasons.append(
            f"only PTX ISA {newest[0]}.{newest[1]}, newer than CUDA {driver_cuda}'s driver can JIT "
            f"({max_isa[0]}.{max_isa[1]})"
        )
    return False, "; ".join(r for r in reasons if r)


def _tegra_reason(same_major: list[int], cc: int) -> str:
    """Why SASS of the same major does not run on `cc` when a Tegra SM is involved ("" if none is)."""
    if cc in TEGRA and same_major:
        return (
            f"{', '.join(f'sm_{a}' for a in same_major)} SASS does not run on the Tegra sm_{cc} ({TEGRA[cc]}): "
            "Tegra GPUs run only SASS built for their exact SM"
        )
    tegra = [a for a in same_major if a in TEGRA]
    if tegra:
        return f"sm_{tegra[0]} SASS is Tegra ({TEGRA[tegra[0]]}) code and does not run on the desktop sm_{cc}"
    return ""
