"""A wheel as verify sees it: its tags, Requires-Dist, shared-object members, and the facts of
every ELF member (dynamic linking and fatbin entries), in a form that travels as gzip'd JSON
(the local fact cache, and the index's `jetwheel_facts` for a published wheel)."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any

from packaging.tags import Tag
from packaging.utils import NormalizedName, parse_wheel_filename
from packaging.version import Version

from jetwheel.errors import JetwheelError
from jetwheel.verify import fatbin
from jetwheel.verify.compress import gunzip, gzip
from jetwheel.verify.elf import Symbols

# Bump when the facts (or how they are read) change: entries of another format are never used.
FORMAT = 2
MAX_INFLATED_FACTS = 256 << 20  # torch's facts inflate to about 20 MiB; a gzip bomb stops here
_SHARED_OBJECT = re.compile(r"\.so(\.\d+)*$")


def is_shared_object(member: str) -> bool:
    return bool(_SHARED_OBJECT.search(member))


@dataclass(frozen=True)
class WheelElf:
    member: str  # path inside the wheel, i.e. below site-packages
    info: Symbols
    fatbin: tuple[fatbin.Entry, ...]

    @functools.cached_property
    def exported(self) -> frozenset[str]:
        """Names an unversioned reference binds to: unversioned, base or default-version definitions."""
        return frozenset(
            line.partition("@")[0] for line in self.info.exports.split("\n") if "@" not in line or "@@" in line
        )

    @functools.cached_property
    def exported_versions(self) -> frozenset[str]:
        """ "name@VER" for every versioned definition, default or hidden (a versioned reference binds to either)."""
        return frozenset(line.replace("@@", "@") for line in self.info.exports.split("\n") if "@" in line)

    def defines(self, name: str, version: str) -> bool:
        """Whether a reference to name (at `version`, "" if unversioned) binds here, as ld.so decides:
        a versioned reference takes a definition of that version, or any in an object without versions."""
        if not version or not self.info.verdefs:
            return name in self.exported
        return f"{name}@{version}" in self.exported_versions

    @functools.cached_property
    def imports(self) -> tuple[tuple[str, str, str, bool], ...]:
        """(name, version, file it is required from, weak) for every undefined dynamic symbol."""
        out = []
        for line in self.info.imports.split("\n"):
            if line:
                name, version, file, weak = line.split("\t")
                out.append((name, version, file, weak == "w"))
        return tuple(out)


@dataclass(frozen=True)
class Wheel:
    filename: str
    sha256: str
    requires: tuple[str, ...]
    libraries: tuple[str, ...]  # members named like shared objects (*.so, *.so.N), ELF or not
    elves: tuple[WheelElf, ...]

    @functools.cached_property
    def _parsed(self) -> tuple[NormalizedName, Version, frozenset[Tag]]:
        try:
            name, version, _build, tags = parse_wheel_filename(self.filename)
        except ValueError as e:
            raise JetwheelError(f"{self.filename}: not a wheel filename ({e})") from None
        return name, version, frozenset(tags)

    @property
    def name(self) -> NormalizedName:
        return self._parsed[0]

    @property
    def version(self) -> Version:
        return self._parsed[1]

    @property
    def tags(self) -> frozenset[Tag]:
        return self._parsed[2]

    @property
    def machine(self) -> str:
        plats = {t.platform for t in self.tags}
        for arch in ("aarch64", "x86_64", "ppc64le", "s390x"):
            if any(p.endswith(arch) for p in plats):
                return arch
        return ""

    def to_bytes(self) -> bytes:
        """gzip'd JSON: the local fact cache's entry, and the index's `jetwheel_facts` field."""
        doc: dict[str, Any] = {
            "format": FORMAT,
            "filename": self.filename,
            "sha256": self.sha256,
            "requires": list(self.requires),
            "libraries": list(self.libraries),
            "elves": [
                {
                    "member": e.member,
                    **{k: list(v) if isinstance(v, tuple) else v for k, v in vars(e.info).items()},
                    "fatbin": [[x.kind, x.arch, *x.version, x.compressed] for x in e.fatbin],
                }
                for e in self.elves
            ],
        }
        return gzip(json.dumps(doc, separators=(",", ":")).encode())


def from_bytes(data: bytes) -> Wheel:
    """The facts `Wheel.to_bytes` wrote; ValueError if they are of another format or damaged."""
    try:
        doc = json.loads(gunzip(data, MAX_INFLATED_FACTS))
        if doc.get("format") != FORMAT:
            raise ValueError(f"facts format {doc.get('format')!r}, this jetwheel reads {FORMAT}")
        elves = []
        for e in doc["elves"]:
            fat = tuple(fatbin.Entry(k, a, (ma, mi), c) for k, a, ma, mi, c in e.pop("fatbin"))
            member = e.pop("member")
            fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in e.items()}
            sym = Symbols(**fields)
            elves.append(WheelElf(member, sym, fat))
        return Wheel(doc["filename"], doc["sha256"], tuple(doc["requires"]), tuple(doc["libraries"]), tuple(elves))
    except (OSError, EOFError, KeyError, TypeError, AttributeError, json.JSONDecodeError) as e:
        raise ValueError(f"unreadable facts ({e})") from None
    except RecursionError:
        raise ValueError("unreadable facts (nested too deeply)") from None
