"""Read what the dynamic linker sees in an ELF file: machine, DT_NEEDED, DT_SONAME, DT_RPATH and
DT_RUNPATH, and the dynamic symbol table with GNU symbol versions.

The reader works on a `Sparse` file: only the byte ranges verify kept while the file streamed out
of its wheel (headers, the non-executable segments, the section header table; never `.text` or
the fatbin payloads). `layout()` says which ranges it needs once the headers are known; `read_elf`
raises `Missing` with the ranges it lacked, and the caller streams the member again keeping
exactly those. 32- and 64-bit, little- and big-endian files are read alike.
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass

STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE = 1, 2, 10
SHT_RELA, SHT_DYNAMIC, SHT_REL, SHT_DYNSYM = 4, 6, 9, 11
SHT_GNU_VERDEF, SHT_GNU_VERNEED, SHT_GNU_VERSYM = 0x6FFFFFFD, 0x6FFFFFFE, 0x6FFFFFFF
PT_LOAD, PT_DYNAMIC, PF_X = 1, 2, 1
DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH = 1, 14, 15, 29
VER_FLG_BASE, VERSYM_HIDDEN = 0x1, 0x8000
# e_machine -> the machine part of a wheel platform tag
MACHINES = {183: "aarch64", 62: "x86_64", 21: "ppc64le", 22: "s390x", 3: "i686", 40: "armv7l"}


class Missing(Exception):
    """The sparse copy lacks bytes the reader needs: `ranges` lists them as (offset, size)."""

    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        super().__init__(f"{len(ranges)} ranges not kept")
        self.ranges = ranges


def merged_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """[start, end) ranges, sorted and merged: the sparse copy's pieces must not overlap."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(r for r in ranges if r[0] < r[1]):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


class Sparse:
    """Byte ranges of one file, at their offsets; ranges may be dropped again (fatbin payloads)."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._pieces: list[bytes] = []

    def add(self, offset: int, data: bytes) -> None:
        if data:
            i = bisect.bisect(self._starts, offset)
            self._starts.insert(i, offset)
            self._pieces.insert(i, data)

    def drop(self, start: int, end: int) -> None:
        """Forget [start, end): the pieces overlapping it are cut."""
        i = max(bisect.bisect(self._starts, start) - 1, 0)
        while i < len(self._starts) and self._starts[i] < end:
            off, data = self._starts[i], self._pieces[i]
            if off + len(data) <= start:
                i += 1
                continue
            keep = [(off, data[: start - off])] if off < start else []
            if off + len(data) > end:
                keep.append((end, data[end - off :]))
            self._starts[i : i + 1] = [k[0] for k in keep if k[1]]
            self._pieces[i : i + 1] = [k[1] for k in keep if k[1]]
            i += sum(1 for k in keep if k[1])

    def read(self, offset: int, size: int) -> bytes:
        """Bytes [offset, offset+size); raises Missing if any of them was not kept."""
        if size <= 0:
            return b""
        i = bisect.bisect(self._starts, offset) - 1
        out, pos, end = [], offset, offset + size
        while pos < end and 0 <= i < len(self._starts):
            off, data = self._starts[i], self._pieces[i]
            if off > pos or off + len(data) <= pos:
                break
            piece = data[pos - off : end - off]
            out.append(piece)
            pos += len(piece)
            i += 1
        if pos < end:
            raise Missing([(offset, size)])
        return b"".join(out) if len(out) > 1 else out[0]

    def ranges(self) -> list[tuple[int, int]]:
        """[start, end) of every piece kept."""
        return [(o, o + len(p)) for o, p in zip(self._starts, self._pieces, strict=True)]


@dataclass(frozen=True)
class Header:
    little: bool
    bits: int
    machine: str
    phoff: int
    shoff: int
    phentsize: int
    phnum: int
    shentsize: int
    shnum: int

    @property
    def end(self) -> str:
        return "<" if self.little else ">"


@dataclass(frozen=True)
class Segment:
    kind: int
    flags: int
    offset: int
    size: int


@dataclass(frozen=True)
class Section:
    kind: int
    link: int
    info: int
    offset: int
    size: int


@dataclass(frozen=True)
class Symbols:
    """The dynamic linking facts of one ELF file, as plain strings so they serialize cheaply."""

    machine: str
    soname: str
    needed: tuple[str, ...]
    rpath: tuple[str, ...]
    runpath: tuple[str, ...]
    # one definition a line: "name" (unversioned or base), "name@@VER" (default), "name@VER" (hidden)
    exports: str
    # one reference a line: "name\tVER\tFILE\tw" (VER and FILE empty when unversioned; w: weak)
    imports: str
    verdefs: tuple[str, ...]


def is_elf(head: bytes) -> bool:
    return head[:4] == b"\x7fELF"


def header(data: bytes) -> Header:
    """The ELF header from the first 64 bytes; raises ValueError if it is not a usable ELF file."""
    if len(data) < 52 or not is_elf(data) or data[4] not in (1, 2) or data[5] not in (1, 2):
        raise ValueError("not an ELF file")
    bits, little = 32 if data[4] == 1 else 64, data[5] == 1
    end = "<" if little else ">"
    (machine,) = struct.unpack_from(end + "H", data, 18)
    if bits == 64:
        phoff, shoff = struct.unpack_from(end + "QQ", data, 32)
        phentsize, phnum, shentsize, shnum = struct.unpack_from(end + "HHHH", data, 54)
    else:
        phoff, shoff = struct.unpack_from(end + "II", data, 28)
        phentsize, phnum, shentsize, shnum = struct.unpack_from(end + "HHHH", data, 42)
    return Header(little, bits, MACHINES.get(machine, str(machine)), phoff, shoff, phentsize, phnum, shentsize, shnum)


def segments(h: Header, f: Sparse) -> list[Segment]:
    raw = f.read(h.phoff, h.phnum * h.phentsize)
    out = []
    for i in range(h.phnum):
        if h.bits == 64:
            kind, flags, offset, _v, _p, size = struct.unpack_from(h.end + "IIQQQQ", raw, i * h.phentsize)
        else:
            kind, offset, _v, _p, size, _m, flags = struct.unpack_from(h.end + "IIIIIII", raw, i * h.phentsize)
        out.append(Segment(kind, flags, offset, size))
    return out


def kept_ranges(h: Header, segs: list[Segment]) -> list[tuple[int, int]]:
    """What to keep while streaming, before the section headers (at the end) are known: every
    loadable segment but the executable ones (code is never needed), the first segment whole
    (older layouts put the symbol tables in the code segment at offset 0), and the section header
    table. The caller drops fatbin payloads out of these."""
    keep = [
        (s.offset, s.offset + s.size)
        for s in segs
        if s.kind in (PT_LOAD, PT_DYNAMIC) and (not s.flags & PF_X or s.offset == 0)
    ]
    keep.append((h.shoff, h.shoff + h.shnum * h.shentsize))
    return keep


def _sections(h: Header, f: Sparse) -> list[Section]:
    raw = f.read(h.shoff, h.shnum * h.shentsize)
    out = []
    for i in range(h.shnum):
        if h.bits == 64:
            _n, kind, _fl, _a, offset, size, link, info = struct.unpack_from(h.end + "IIQQQQII", raw, i * h.shentsize)
        else:
            _n, kind, _fl, _a, offset, size, link, info = struct.unpack_from(h.end + "IIIIIIII", raw, i * h.shentsize)
        out.append(Section(kind, link, info, offset, size))
    return out


def needed_ranges(h: Header, f: Sparse) -> list[tuple[int, int]]:
    """Every (offset, size) `read_elf` reads: for streaming a member again when `Missing` was raised."""
    secs = _sections(h, f)
    out = [(h.phoff, h.phnum * h.phentsize), (h.shoff, h.shnum * h.shentsize)]
    for s in secs:
        if s.kind in (SHT_DYNAMIC, SHT_DYNSYM, SHT_GNU_VERDEF, SHT_GNU_VERNEED, SHT_GNU_VERSYM):
            out.append((s.offset, s.size))
            if s.kind in (SHT_DYNAMIC, SHT_DYNSYM, SHT_GNU_VERDEF, SHT_GNU_VERNEED) and s.link < len(secs):
                out.append((secs[s.link].offset, secs[s.link].size))
    return out


def _cstr(table: bytes, at: int) -> str:
    return table[at : table.index(b"\0", at)].decode("utf-8", "replace")


def read_elf(h: Header, f: Sparse) -> Symbols:
    """The dynamic linking facts; raises Missing when `f` lacks bytes, ValueError when malformed."""
    try:
        return _read(h, f)
    except (struct.error, IndexError) as e:
        raise ValueError(f"malformed ELF file ({e})") from None


def _read(h: Header, f: Sparse) -> Symbols:
    missing = [(o, n) for o, n in needed_ranges(h, f) if not _has(f, o, n)]
    if missing:
        raise Missing(missing)
    secs = _sections(h, f)
    by_kind = {s.kind: s for s in secs}
    dyn = _dynamic(h, f, secs, by_kind.get(SHT_DYNAMIC))
    versions, verdefs = _version_definitions(h, f, secs, by_kind.get(SHT_GNU_VERDEF))
    versions.update(_version_needs(h, f, secs, by_kind.get(SHT_GNU_VERNEED)))
    exports, imports = _symbols(h, f, secs, by_kind.get(SHT_DYNSYM), by_kind.get(SHT_GNU_VERSYM), versions)
    return Symbols(
        h.machine,
        dyn[DT_SONAME][-1] if dyn[DT_SONAME] else "",  # the last one, as ld.so reads the table
        tuple(dyn[DT_NEEDED]),
        tuple(p for p in dyn[DT_RPATH] if p),
        tuple(p for p in dyn[DT_RUNPATH] if p),
        "\n".join(exports),
        "\n".join(imports),
        tuple(verdefs),
    )


def _strings(f: Sparse, secs: list[Section], s: Section) -> bytes:
    """The string table section `s` links to."""
    return f.read(secs[s.link].offset, secs[s.link].size)


def _dynamic(h: Header, f: Sparse, secs: list[Section], dyn: Section | None) -> dict[int, list[str]]:
    """DT_NEEDED, DT_SONAME, DT_RPATH and DT_RUNPATH (split at ':') in table order, up to DT_NULL."""
    found: dict[int, list[str]] = {DT_NEEDED: [], DT_SONAME: [], DT_RPATH: [], DT_RUNPATH: []}
    if dyn is None:
        return found
    strtab = _strings(f, secs, dyn)
    word = "Q" if h.bits == 64 else "I"
    for tag, val in struct.iter_unpack(h.end + word * 2, f.read(dyn.offset, dyn.size - dyn.size % (h.bits // 4))):
        if tag == 0:
            break
        if tag in found:
            value = _cstr(strtab, val)
            found[tag] += value.split(":") if tag in (DT_RPATH, DT_RUNPATH) else [value]
    return found


def _version_definitions(
    h: Header, f: Sparse, secs: list[Section], vd: Section | None
) -> tuple[dict[int, tuple[str, str]], list[str]]:
    """The versions this file defines: index -> (version, ""), and their names in table order; the
    base entry (the file's own name) is left out."""
    versions: dict[int, tuple[str, str]] = {}
    verdefs: list[str] = []
    if vd is None:
        return versions, verdefs
    strtab, raw, at = _strings(f, secs, vd), f.read(vd.offset, vd.size), 0
    for _ in range(vd.info):
        _ver, flags, ndx, cnt, _hash, aux, nxt = struct.unpack_from(h.end + "HHHHIII", raw, at)
        if cnt:
            name = _cstr(strtab, struct.unpack_from(h.end + "I", raw, at + aux)[0])
            if not flags & VER_FLG_BASE:  # the base entry names the file itself
                versions[ndx] = (name, "")
                verdefs.append(name)
        if not nxt:
            break
        at += nxt
    return versions, verdefs


def _version_needs(h: Header, f: Sparse, secs: list[Section], vn: Section | None) -> dict[int, tuple[str, str]]:
    """The versions this file requires: index -> (version, the file it is required from)."""
    versions: dict[int, tuple[str, str]] = {}
    if vn is None:
        return versions
    strtab, raw, at = _strings(f, secs, vn), f.read(vn.offset, vn.size), 0
    for _ in range(vn.info):
        _ver, cnt, file_off, aux, nxt = struct.unpack_from(h.end + "HHIII", raw, at)
        filename, a = _cstr(strtab, file_off), at + aux
        for _ in range(cnt):
            _hash, _flags, other, name_off, anext = struct.unpack_from(h.end + "IHHII", raw, a)
            versions[other] = (_cstr(strtab, name_off), filename)
            if not anext:
                break
            a += anext
        if not nxt:
            break
        at += nxt
    return versions


def _symbols(
    h: Header,
    f: Sparse,
    secs: list[Section],
    ds: Section | None,
    vs: Section | None,
    versions: dict[int, tuple[str, str]],
) -> tuple[list[str], list[str]]:
    """The global and weak dynamic symbols: (definitions, references), each line as `Symbols` says."""
    exports: list[str] = []
    imports: list[str] = []
    if ds is None or not ds.size:
        return exports, imports
    end = h.end
    strtab = _strings(f, secs, ds)
    raw = f.read(ds.offset, ds.size)
    versym = struct.unpack(f"{end}{vs.size // 2}H", f.read(vs.offset, vs.size - vs.size % 2)) if vs else ()
    if h.bits == 64:
        rows = ((n, i, shn) for n, i, _o, shn, _v, _s in struct.iter_unpack(end + "IBBHQQ", raw))
    else:
        rows = ((n, i, shn) for n, _v, _s, i, _o, shn in struct.iter_unpack(end + "IIIBBH", raw))
    for idx, (name_off, st_info, shndx) in enumerate(rows):
        bind = st_info >> 4
        if idx == 0 or not name_off or bind not in (STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE):
            continue
        name = _cstr(strtab, name_off)
        vsym = versym[idx] if idx < len(versym) else 1
        vname, vfile = versions.get(vsym & 0x7FFF, ("", ""))
        if shndx == 0:
            imports.append(f"{name}\t{vname}\t{vfile}\t{'w' if bind == STB_WEAK else ''}")
        elif vsym & 0x7FFF == 0:
            continue  # VER_NDX_LOCAL: not exported
        elif not vname:
            exports.append(name)
        else:
            exports.append(f"{name}{'@' if vsym & VERSYM_HIDDEN else '@@'}{vname}")
    return exports, imports


def _has(f: Sparse, offset: int, size: int) -> bool:
    try:
        f.read(offset, size)
    except Missing:
        return False
    return True


def relocated_symbols(h: Header, f: Sparse) -> list[str]:
    """Names of the dynamic symbols the relocations use, in the order ld.so processes them
    (DT_RELA/DT_REL before DT_JMPREL, each in table order): the first undefined one in this order
    is the one `dlopen` names. `f` must hold the relocation sections and the dynamic symbol table."""
    secs = _sections(h, f)
    dynsym = next((i for i, s in enumerate(secs) if s.kind == SHT_DYNSYM), None)
    if dynsym is None:
        return []
    ds, word = secs[dynsym], 24 if h.bits == 64 else 16
    strtab = _strings(f, secs, ds)
    raw = f.read(ds.offset, ds.size)
    names = [_cstr(strtab, struct.unpack_from(h.end + "I", raw, i)[0]) for i in range(0, ds.size - word + 1, word)]
    rels = [s for s in secs if s.kind in (SHT_RELA, SHT_REL) and s.link == dynsym]
    out: list[str] = []
    for s in sorted(rels, key=lambda s: (s.info != 0, s.offset)):  # .rela.plt (sh_info set) last
        entry = (24 if s.kind == SHT_RELA else 16) if h.bits == 64 else (12 if s.kind == SHT_RELA else 8)
        data = f.read(s.offset, s.size - s.size % entry)
        for at in range(0, len(data), entry):
            if h.bits == 64:
                (info,) = struct.unpack_from(h.end + "Q", data, at + 8)
                idx = info >> 32
            else:
                (info,) = struct.unpack_from(h.end + "I", data, at + 4)
                idx = info >> 8
            if idx and idx < len(names):
                out.append(names[idx])
    return out


def relocation_ranges(h: Header, f: Sparse) -> list[tuple[int, int]]:
    """The (offset, size) ranges `relocated_symbols` reads beyond `needed_ranges`."""
    return [(s.offset, s.size) for s in _sections(h, f) if s.kind in (SHT_RELA, SHT_REL)]
