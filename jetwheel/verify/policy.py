"""What a runtime image provides to the wheels, read from its files instead of written by hand: every
library ld.so finds there by name (the standard directories, those of /etc/ld.so.conf and
/etc/ld.so.cache, and the image's LD_LIBRARY_PATH outside site-packages), with its exported dynamic
symbols and their versions. Saved as a JSON policy file; verify binds symbols against it exactly.

Only the dynamic linking facts are read (elf.needed_ranges: headers, the dynamic section, the
symbol and version tables), by seeking in each file: the CUDA libraries' code is never read."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from jetwheel.errors import JetwheelError
from jetwheel.target import Target
from jetwheel.verify import elf
from jetwheel.verify.wheel import is_shared_object

FORMAT = 2  # 2: each library's DT_NEEDED (a format-1 file lacks them: read the image again)
# ld.so's own default directories, and Debian/Ubuntu's multiarch ones (ld.so.conf names those too)
STANDARD_DIRS = ("/lib", "/usr/lib", "/lib64", "/usr/lib64")
TRIPLETS = {"aarch64": "aarch64-linux-gnu", "x86_64": "x86_64-linux-gnu"}
_CACHE_MAGIC = b"glibc-ld.so.cache1.1"


@dataclass(frozen=True)
class Library:
    """One ELF file the runtime provides (several names may lead to it: its SONAME and symlinks)."""

    soname: str
    exports: str  # as elf.Symbols.exports: "name", "name@@VER" (default) or "name@VER" (hidden), a line each
    verdefs: tuple[str, ...]
    needed: tuple[str, ...] = ()  # its DT_NEEDED: ld.so searches a library's dependencies too


@dataclass(frozen=True)
class Policy:
    """The libraries a runtime provides, by the names ld.so finds them under."""

    sources: tuple[str, ...]  # what was read: "IMAGE@DIGEST", a runtime tarball "FILE sha256:..."
    machine: str
    files: Mapping[str, Library]  # path in the image -> the library there
    names: Mapping[str, str] = field(default_factory=dict)  # file name ld.so looks up -> path in files

    def provides(self, name: str) -> bool:
        return name in self.names

    def provided(self) -> dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]]:
        """name -> (exports, verdefs, needed): the form Target carries."""
        return {n: (self.files[p].exports, self.files[p].verdefs, self.files[p].needed) for n, p in self.names.items()}

    def merged(self, other: Policy) -> Policy:
        """This runtime with `other`'s libraries added (a runtime tarball unpacked into it); a name
        both have is this one's, as the image's directories come first in LD_LIBRARY_PATH's absence."""
        if other.machine != self.machine:
            raise JetwheelError(f"{other.sources[0]} is for {other.machine}, the runtime is {self.machine}")
        names = {**other.names, **self.names}
        return Policy((*self.sources, *other.sources), self.machine, {**other.files, **self.files}, names)

    def counts(self) -> dict[str, int]:
        return {
            "names": len(self.names),
            "files": len(self.files),
            "symbols": sum(len(lib.exports.split("\n")) for lib in self.files.values() if lib.exports),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "sources": list(self.sources),
            "machine": self.machine,
            "names": dict(sorted(self.names.items())),
            "files": {
                p: {
                    "soname": lib.soname,
                    "needed": list(lib.needed),
                    "verdefs": list(lib.verdefs),
                    "exports": lib.exports.split("\n"),
                }
                for p, lib in sorted(self.files.items())
            },
        }


def apply(target: Target, policy: Policy) -> Target:
    """The target with the runtime's libraries in place of the profile's hand-written table."""
    if policy.machine != target.machine:
        raise JetwheelError(f"the policy ({', '.join(policy.sources)}) is for {policy.machine}, not {target.machine}")
    return replace(target, system_provided=policy.provided(), system_policy=", ".join(policy.sources))


def save(policy: Policy, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(policy.to_json(), indent=1, sort_keys=False) + "\n")


def load(path: Path) -> Policy:
    try:
        doc = json.loads(path.read_text())
        if doc.get("format") != FORMAT:
            raise JetwheelError(f"{path}: policy format {doc.get('format')!r}, this jetwheel reads {FORMAT}")
        files = {
            p: Library(str(f["soname"]), "\n".join(f["exports"]), tuple(f["verdefs"]), tuple(f["needed"]))
            for p, f in doc["files"].items()
        }
        names = {str(n): str(p) for n, p in doc["names"].items()}
        bad = sorted(set(names.values()) - set(files))
        if bad:
            raise JetwheelError(f"{path}: names point at files the policy lacks: {', '.join(bad[:3])}")
        return Policy(tuple(doc["sources"]), str(doc["machine"]), files, names)
    except OSError as e:
        raise JetwheelError(f"{path}: cannot read the policy ({e.strerror})") from None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise JetwheelError(f"{path}: not a jetwheel policy file ({e!r})") from None


# --- reading a root filesystem ------------------------------------------------------------------------
def _inside(root: Path, path: str) -> Path:
    """`path` of the image (absolute) as a path below `root`: only for a path real_path gave, whose
    every part is a real directory or file of the image (no symlink left to lead out of it)."""
    return root / path.lstrip("/")


def real_path(root: Path, path: str) -> str | None:
    """The image path `path` leads to with every symlink on the way resolved inside the image,
    directories included (an absolute link is the image's, never this machine's: `/usr/lib ->
    /lib` in the image is the image's /lib); None when it leads nowhere."""
    todo = [p for p in path.split("/") if p]
    done: list[str] = []
    hops = 0
    while todo:
        part = todo.pop(0)
        if part in (".", ""):
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        here = root.joinpath(*done, part)  # every part before is a real directory: lstat stays inside
        if here.is_symlink():
            hops += 1
            if hops > 40:
                return None
            link = os.readlink(here)
            if link.startswith("/"):
                done = []
            todo = [p for p in link.split("/") if p] + todo
            continue
        if not os.path.lexists(here):
            return None
        done.append(part)
    return "/" + "/".join(done)


def resolve(root: Path, path: str) -> str | None:
    """The image path a file's path leads to, following symlinks inside the image; None when it
    leads nowhere or not to a file."""
    real = real_path(root, path)
    return real if real is not None and _inside(root, real).is_file() else None


def _real_dir(root: Path, path: str) -> str | None:
    real = real_path(root, path)
    return real if real is not None and _inside(root, real).is_dir() else None


def _conf_dirs(root: Path, conf: str, depth: int = 0) -> list[str]:
    """The directories an ld.so.conf file names, its `include` globs followed (inside the image)."""
    out: list[str] = []
    real = resolve(root, conf)
    try:
        lines = _inside(root, real).read_text(errors="replace").splitlines() if real else []
    except OSError:
        return out
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line.startswith("include") and depth < 8:
            pattern = line.split(None, 1)[1] if " " in line else ""
            pattern = pattern if pattern.startswith("/") else os.path.join(os.path.dirname(conf), pattern)
            where = _real_dir(root, os.path.dirname(pattern))
            if where is None:
                continue
            for hit in sorted(glob.glob(glob.escape(str(_inside(root, where))) + "/" + os.path.basename(pattern))):
                out += _conf_dirs(root, f"{where.rstrip('/')}/{os.path.basename(hit)}", depth + 1)
        elif line.startswith("/"):
            out.append(line)
    return out


def cache_dirs(data: bytes) -> list[str]:
    """The directories of the libraries /etc/ld.so.cache lists (glibc's "new" format, the only one
    glibc 2.32+ writes; an old-format header before it is skipped)."""
    at = data.find(_CACHE_MAGIC)
    if at < 0:
        return []
    try:
        (nlibs,) = struct.unpack_from("<I", data, at + 20)
        out: list[str] = []
        for i in range(nlibs):
            _flags, _key, value = struct.unpack_from("<iII", data, at + 48 + i * 24)
            end = data.index(b"\0", at + value)
            out.append(os.path.dirname(data[at + value : end].decode("utf-8", "replace")))
    except (struct.error, ValueError):
        return []
    return list(dict.fromkeys(out))


def library_dirs(root: Path, machine: str, ld_library_path: str = "") -> list[str]:
    """Where ld.so finds a library in the image, in its order: LD_LIBRARY_PATH (its site-packages
    entries left out: those are the wheels'), ld.so.cache/ld.so.conf, the defaults."""
    dirs = [d for d in ld_library_path.split(":") if d.startswith("/") and "-packages/" not in d + "/"]
    cache = resolve(root, "/etc/ld.so.cache")
    with contextlib.suppress(OSError):  # an image without a cache: ld.so reads the conf and defaults
        dirs += cache_dirs(_inside(root, cache).read_bytes()) if cache else []
    dirs += _conf_dirs(root, "/etc/ld.so.conf")
    triplet = TRIPLETS.get(machine, "")
    dirs += [d for s in STANDARD_DIRS for d in ((f"{s}/{triplet}", s) if triplet else (s,))]
    real = (_real_dir(root, os.path.normpath(d)) for d in dirs)
    return [d for d in dict.fromkeys(real) if d is not None]


def read_library(path: Path) -> elf.Symbols | None:
    """The dynamic linking facts of the ELF file at `path`, by seeking to what the reader needs;
    None if it is not an ELF file ld.so would load."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            try:
                h = elf.header(head)
            except ValueError:
                return None

            def sparse(ranges: Iterable[tuple[int, int]]) -> elf.Sparse:
                out = elf.Sparse()
                for lo, hi in elf.merged_ranges([(o, o + n) for o, n in ranges]):
                    f.seek(lo)
                    out.add(lo, f.read(hi - lo))
                return out

            first = sparse([(0, 64), (h.phoff, h.phnum * h.phentsize), (h.shoff, h.shnum * h.shentsize)])
            return elf.read_elf(h, sparse([(0, 64), *elf.needed_ranges(h, first)]))
    except (OSError, ValueError, elf.Missing):
        return None


def read_tree(root: Path, machine: str, source: str, ld_library_path: str = "") -> Policy:
    """The policy of the root filesystem at `root` (an image mounted or unpacked there)."""
    policy = read_dirs(root, library_dirs(root, machine, ld_library_path), machine, source)
    if not policy.names:
        raise JetwheelError(f"{source}: no {machine} shared libraries found in its library directories")
    return policy


def read_dirs(root: Path, dirs: Iterable[str], machine: str, source: str) -> Policy:
    """The libraries of `machine` in `dirs` (paths below `root`), the first directory naming a file winning."""
    files: dict[str, Library] = {}
    names: dict[str, str] = {}
    skipped: set[str] = set()
    for d in (real for real in (_real_dir(root, d) for d in dirs) if real is not None):
        for entry in sorted(os.listdir(_inside(root, d))):
            if entry in names or not is_shared_object(entry):
                continue
            real = resolve(root, f"{d}/{entry}")
            if real is None or real in skipped:
                continue
            if real not in files:
                info = read_library(_inside(root, real))
                if info is None or info.machine != machine:
                    skipped.add(real)
                    continue
                files[real] = Library(info.soname, info.exports, info.verdefs, info.needed)
            names[entry] = real
    return Policy((source,), machine, files, names)
