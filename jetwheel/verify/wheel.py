"""A wheel as verify sees it: tags, core metadata, and its ELF members read one at a time."""

from __future__ import annotations

import email.parser
import email.policy
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
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
        with tempfile.TemporaryDirectory(prefix="jetwheel-verify-") as tmp:
            scratch = Path(tmp) / "member"
            for m in members:
                if m.endswith("/"):
                    continue
                with zf.open(m) as src:
                    if not is_elf(src.read(4)):
                        continue
                with zf.open(m) as src, open(scratch, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                with open(scratch, "rb") as f:
                    try:
                        info = read_elf(f)
                    except ValueError:
                        continue
                    wheel.elves.append(WheelElf(m, info, fatbin.scan(f)))
    return wheel


def elves_by_soname(wheels: list[Wheel]) -> Iterator[tuple[str, Wheel, WheelElf]]:
    """Each shared library in the set under the names the dynamic linker finds it by."""
    for w in wheels:
        for e in w.elves:
            yield (e.info.soname or Path(e.member).name), w, e
            if e.info.soname and e.info.soname != Path(e.member).name:
                yield Path(e.member).name, w, e
