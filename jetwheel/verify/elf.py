"""Read what the dynamic linker will see in an ELF file: machine, DT_NEEDED, SONAME, RUNPATH, and
the dynamic symbol table with symbol versions.

pyelftools reads the structure (headers, sections, version definitions and needs); the two large
tables (.dynsym and .gnu.version: hundreds of thousands of entries in libtorch) are decoded in bulk
with struct/array, which is what makes verify usable on real torch wheels.
"""

from __future__ import annotations

import array
import struct
import sys
from dataclasses import dataclass, field
from typing import BinaryIO

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerDefSection, GNUVerNeedSection

STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE = 1, 2, 10
# e_machine values -> the machine part of a wheel platform tag
MACHINES = {"EM_AARCH64": "aarch64", "EM_X86_64": "x86_64", "EM_PPC64": "ppc64le", "EM_S390": "s390x"}


@dataclass(frozen=True)
class Undefined:
    name: str
    version: str  # "" when unversioned
    version_file: str  # the soname the version was required from (.gnu.version_r), "" if none
    weak: bool


@dataclass
class ElfInfo:
    machine: str  # "aarch64", "x86_64", or the raw e_machine
    elfclass: int
    soname: str = ""
    needed: list[str] = field(default_factory=list)
    runpath: list[str] = field(default_factory=list)
    # name -> versions it is defined with ("" = unversioned / base)
    defined: dict[str, set[str]] = field(default_factory=dict)
    undefined: list[Undefined] = field(default_factory=list)
    verdefs: set[str] = field(default_factory=set)


def is_elf(head: bytes) -> bool:
    return head[:4] == b"\x7fELF"


def read_elf(f: BinaryIO) -> ElfInfo:
    """Parse an ELF file; raises ValueError if it is not one."""
    try:
        elf = ELFFile(f)
    except ELFError as e:
        raise ValueError(str(e)) from None
    info = ElfInfo(machine=MACHINES.get(elf["e_machine"], str(elf["e_machine"])), elfclass=elf.elfclass)
    little = elf.little_endian
    dynsym = elf.get_section_by_name(".dynsym")
    ver_names: dict[int, tuple[str, str]] = {}  # version index -> (name, file it comes from)
    for sec in elf.iter_sections():
        if isinstance(sec, DynamicSection):
            for tag in sec.iter_tags():
                # pyelftools sets these attributes per tag kind; they are untyped
                kind = tag.entry.d_tag
                if kind == "DT_NEEDED":
                    info.needed.append(str(getattr(tag, "needed", "")))
                elif kind == "DT_SONAME":
                    info.soname = str(getattr(tag, "soname", ""))
                elif kind in ("DT_RUNPATH", "DT_RPATH"):
                    info.runpath += str(getattr(tag, "runpath" if kind == "DT_RUNPATH" else "rpath", "")).split(":")
        elif isinstance(sec, GNUVerDefSection):
            for verdef, aux in sec.iter_versions():
                names = [a.name for a in aux]
                if names and not verdef["vd_flags"] & 0x1:  # VER_FLG_BASE names the file itself
                    ver_names[verdef["vd_ndx"]] = (names[0], "")
                    info.verdefs.add(names[0])
        elif isinstance(sec, GNUVerNeedSection):
            for verneed, aux in sec.iter_versions():
                for a in aux:
                    ver_names[a["vna_other"]] = (a.name, str(verneed.name or ""))
    if dynsym is None or dynsym["sh_size"] == 0:
        return info
    strtab = elf.get_section(dynsym["sh_link"]).data()
    raw = dynsym.data()
    versym = elf.get_section_by_name(".gnu.version")
    versions = array.array("H")
    if versym is not None:
        versions.frombytes(versym.data())
        if (sys.byteorder == "little") != little:
            versions.byteswap()
    end = "<" if little else ">"
    if elf.elfclass == 64:
        rows = ((n, i, shn) for n, i, _o, shn, _v, _s in struct.iter_unpack(end + "IBBHQQ", raw))
    else:
        rows = ((n, i, shn) for n, _v, _s, i, _o, shn in struct.iter_unpack(end + "IIIBBH", raw))
    for idx, (name_off, st_info, shndx) in enumerate(rows):
        if idx == 0 or not name_off:
            continue
        bind = st_info >> 4
        if bind not in (STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE):
            continue
        name = strtab[name_off : strtab.index(b"\0", name_off)].decode("utf-8", "replace")
        vidx = (versions[idx] & 0x7FFF) if idx < len(versions) else 1
        vname, vfile = ver_names.get(vidx, ("", ""))
        if shndx == 0:
            info.undefined.append(Undefined(name, vname, vfile, bind == STB_WEAK))
        else:
            info.defined.setdefault(name, set()).add(vname)
    return info
