"""A wheel as verify sees it: tags, core metadata, and its ELF members read one at a time."""

from __future__ import annotations

import email.parser
import email.policy
import os
import tempfile
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from packaging.tags import Tag
from packaging.utils import NormalizedName, parse_wheel_filename
from packaging.version import Version

from ..errors import JetwheelError
from . import fatbin
from .elf import ElfInfo, is_elf, read_elf


@dataclass
class WheelElf:
    member: str  # path inside the wheel
    info: ElfInfo
    fatbin: list[fatbin.Entry]


@dataclass
class Wheel:
    path: Path
    name: NormalizedName
    version: Version
    tags: frozenset[Tag]
    members: list[str]
    requires: list[str]
    elves: list[WheelElf] = field(default_factory=list)

    @property
    def machine(self) -> str:
        plats = {t.platform for t in self.tags}
        for arch in ("aarch64", "x86_64", "ppc64le", "s390x"):
            if any(p.endswith(arch) for p in plats):
                return arch
        return ""


def open_wheel(path: Path) -> Wheel:
    """Read a wheel's metadata and every ELF member (extracted to a temp file one at a time)."""
    try:
        name, version, _build, tags = parse_wheel_filename(path.name)
    except ValueError as e:
        raise JetwheelError(f"{path.name}: not a wheel filename ({e})") from None
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as e:
        raise JetwheelError(f"{path}: cannot open as a wheel ({e})") from None
    with zf:
        members = zf.namelist()
        meta_name = next((m for m in members if m.count("/") == 1 and m.endswith(".dist-info/METADATA")), None)
        if meta_name is None:
            raise JetwheelError(f"{path.name}: no .dist-info/METADATA")
        msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(zf.read(meta_name))
        wheel = Wheel(
            path, name, version, frozenset(tags), members, [str(r) for r in msg.get_all("Requires-Dist") or []]
        )
        candidates = [m for m in members if _may_be_elf(m)]
    # zlib releases the GIL: members decompress in parallel, each worker with its own zip handle
    with tempfile.TemporaryDirectory(prefix="jetwheel-verify-") as tmp, ThreadPoolExecutor(_WORKERS) as pool:
        parts = [candidates[i::_WORKERS] for i in range(_WORKERS)]
        results = pool.map(lambda n: _read_members(path, parts[n], Path(tmp) / f"member-{n}"), range(_WORKERS))
        found = {e.member: e for part in results for e in part}
    wheel.elves = [found[m] for m in candidates if m in found]
    return wheel


_WORKERS = min(4, os.cpu_count() or 1)
# Files that are never ELF objects: skipping them saves opening thousands of members (torch has 12k).
_NOT_ELF = (
    ".py",
    ".pyi",
    ".pyc",
    ".h",
    ".hpp",
    ".cuh",
    ".cpp",
    ".c",
    ".txt",
    ".json",
    ".yaml",
    ".md",
    ".cmake",
    ".typed",
    "METADATA",
    "RECORD",
    "WHEEL",
    "LICENSE",
    ".html",
    ".js",
    ".css",
    ".png",
)


def _may_be_elf(member: str) -> bool:
    return not member.endswith("/") and not member.endswith(_NOT_ELF)


def _read_members(path: Path, members: list[str], scratch: Path) -> list[WheelElf]:
    """Extract each member once: decompress, write for the ELF reader and scan for fatbins."""
    out: list[WheelElf] = []
    with zipfile.ZipFile(path) as zf:
        for m in members:
            with zf.open(m) as src:
                head = src.read(4)
                if not is_elf(head):
                    continue
                scanner = fatbin.Scanner()
                scanner.feed(head)
                with open(scratch, "wb") as dst:
                    dst.write(head)
                    while chunk := src.read(16 << 20):
                        dst.write(chunk)
                        scanner.feed(chunk)
            with open(scratch, "rb") as f:
                try:
                    info = read_elf(f)
                except ValueError:
                    continue
            out.append(WheelElf(m, info, scanner.finish()))
    return out


def elves_by_soname(wheels: list[Wheel]) -> Iterator[tuple[str, Wheel, WheelElf]]:
    """Each shared library in the set under the names the dynamic linker finds it by."""
    for w in wheels:
        for e in w.elves:
            yield (e.info.soname or Path(e.member).name), w, e
            if e.info.soname and e.info.soname != Path(e.member).name:
                yield Path(e.member).name, w, e
