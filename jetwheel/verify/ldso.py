"""The one model of glibc's ld.so in jetwheel: verify's loader (wheels below one site-packages)
and the doctor (the real files of an environment, `Process`) both search with `search_dirs`.

Search for a DT_NEEDED name, in order: an object already loaded under that name (its SONAME or the
name it was loaded by, or the same file by device and inode); a name with a slash as a path; the
DT_RPATH of the object, then of the object that loaded it, and on up to the executable, then the
executable's own (all only when the needing object has no DT_RUNPATH; an object with both has only
its RUNPATH, ld.so drops the RPATH); LD_LIBRARY_PATH; the needing object's own DT_RUNPATH (never
inherited: a RUNPATH serves only its object's direct needs); the ld.so cache; the default
directories. `$ORIGIN` is the directory of the object as it was opened. A candidate of another ELF
class or machine is skipped, as ld.so skips it.

Mapping is breadth first and stops at the first name not found (what `dlopen` reports). Then the
new objects are relocated, dependencies first (reverse load order); a reference binds in the global
scope (the executable and what it links) and then in the root's breadth-first closure; the first
unbound non-weak reference in relocation order is the `undefined symbol` `dlopen` reports. Version
requirements (`version X not found (required by Y)`) are checked at mapping time, before that.

This module runs inside the examined interpreter (or image) as part of the doctor's zipapp: standard
library and the ELF reader only."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from jetwheel.verify.wheel import WheelElf

DEFAULT_DIRS = {
    "x86_64": ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"),
    "aarch64": ("/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"),
}


@dataclass(frozen=True)
class Facts:
    """What the model needs of one real file: its ELF facts and its identity (device, inode)."""

    elf: WheelElf
    file_id: tuple[int, int]


class Store(Protocol):
    """Where the model reads files (the doctor's fact cache)."""

    def get(self, path: str) -> Facts | None: ...

    def relocation_order(self, path: str) -> list[str]: ...


def expand(entry: str, origin: str) -> str:
    """A RPATH/RUNPATH entry with `$ORIGIN` / `${ORIGIN}` replaced by the object's directory."""
    return entry.replace("${ORIGIN}", origin).replace("$ORIGIN", origin)


def rpath(rpath: Sequence[str], runpath: Sequence[str]) -> Sequence[str]:
    """The DT_RPATH ld.so uses: none when the object also has a DT_RUNPATH."""
    return () if runpath else rpath


@dataclass(frozen=True)
class Searcher:
    """An object as the search sees it: its directory ($ORIGIN), DT_RPATH and DT_RUNPATH."""

    origin: str
    rpath: tuple[str, ...]
    runpath: tuple[str, ...]


def search_dirs(obj: Searcher, loaders: Sequence[Searcher], ld_library_path: Sequence[str] = ()) -> list[str]:
    """The directories ld.so tries for a DT_NEEDED name of `obj` (before the cache and the default
    directories), `loaders` being the objects that loaded it, nearest first, the executable last."""
    dirs: list[str] = []
    if not obj.runpath:
        for o in (obj, *loaders):
            dirs += [expand(d, o.origin) for d in rpath(o.rpath, o.runpath)]
    dirs += ld_library_path
    dirs += [expand(d, obj.origin) for d in obj.runpath]
    return dirs


@dataclass(frozen=True)
class Failure:
    """Why a dlopen fails: the first thing ld.so names."""

    kind: str  # "missing-library" | "undefined-symbol" | "missing-version"
    name: str  # the library, the (mangled) symbol, or the version
    object: str  # the object that needed it
    candidates: tuple[str, ...] = ()  # missing-library: files of that name elsewhere in the environment
    expected: str = ""  # undefined-symbol: the linked library that defines most of the symbol's namespace


@dataclass
class Loaded:
    path: str
    facts: Facts
    names: set[str]
    file_id: tuple[int, int]

    @property
    def elf(self) -> WheelElf:
        return self.facts.elf

    @property
    def searcher(self) -> Searcher:
        return Searcher(os.path.dirname(self.path), self.elf.info.rpath, self.elf.info.runpath)


def ld_cache() -> dict[str, list[str]]:
    """SONAME -> paths, from `ldconfig -p` (the ld.so cache of this system); empty without ldconfig."""
    for exe in ("/sbin/ldconfig", "/usr/sbin/ldconfig", "ldconfig"):
        try:
            out = subprocess.run([exe, "-p"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        cache: dict[str, list[str]] = {}
        for line in out.splitlines()[1:]:
            name, sep, path = line.strip().partition(" => ")
            if sep:
                cache.setdefault(name.split(" (", 1)[0], []).append(path.strip())
        return cache
    return {}


class Process:
    """One interpreter process: what is loaded, and what a dlopen of one more file does."""

    def __init__(self, store: Store, machine: str, env: Mapping[str, str], cache: dict[str, list[str]]) -> None:
        self.store, self.machine, self.cache = store, machine, cache
        self.ld_library_path = [
            d or "." for d in env.get("LD_LIBRARY_PATH", "").split(":") if env.get("LD_LIBRARY_PATH")
        ]
        self.loaded: list[Loaded] = []
        self.global_scope: list[Loaded] = []
        self.executable: Loaded | None = None  # the first object loaded globally: its RPATH ends every search
        self.index = Exports()  # shared by the copies of this process

    def copy(self) -> Process:
        other = Process(self.store, self.machine, {}, self.cache)
        other.ld_library_path = self.ld_library_path
        other.loaded, other.global_scope = list(self.loaded), list(self.global_scope)
        other.executable, other.index = self.executable, self.index
        return other

    def _by_name(self, name: str, new: Iterable[Loaded]) -> Loaded | None:
        for obj in (*self.loaded, *new):
            if name in obj.names:
                return obj
        return None

    def _open(self, path: str) -> Facts | None:
        """The facts of an ELF file of this machine at path, or None (absent, not ELF, other machine)."""
        facts = self.store.get(path)
        return facts if facts is not None and facts.elf.info.machine == self.machine else None

    def _search(self, obj: Loaded, chain: list[Loaded], name: str) -> tuple[str, Facts] | None:
        loaders = [o.searcher for o in chain]
        if self.executable is not None and all(o is not self.executable for o in (obj, *chain)):
            loaders.append(self.executable.searcher)  # ld.so tries the executable's RPATH last
        dirs = search_dirs(obj.searcher, loaders, self.ld_library_path)
        tried = [os.path.join(d, name) for d in dirs]
        tried += self.cache.get(name, [])
        tried += [os.path.join(d, name) for d in DEFAULT_DIRS.get(self.machine, ())]
        for path in tried:
            facts = self._open(os.path.normpath(path))
            if facts is not None:
                return os.path.normpath(path), facts
        return None

    def dlopen(self, path: str, global_: bool = False) -> tuple[list[Loaded], Failure | None]:
        """Map and relocate `path` and its closure; on success they join the process (and its global
        scope with `global_`). Returns the root's breadth-first closure and the failure, if any."""
        facts = self._open(path)
        if facts is None:
            return [], Failure("missing-library", os.path.basename(path), path)
        fid = facts.file_id
        root = next((o for o in self.loaded if o.file_id == fid), None)
        new: list[Loaded] = []
        if root is None:
            root = Loaded(path, facts, {os.path.basename(path), facts.elf.info.soname} - {""}, fid)
            new.append(root)
        closure, parents = [root], {id(root): list[Loaded]()}
        i = 0
        while i < len(closure):
            obj = closure[i]
            i += 1
            for name in obj.elf.info.needed:
                dep = self._by_name(name, new)
                if dep is None:
                    found = (
                        self._search(obj, parents[id(obj)], name)
                        if "/" not in name
                        else ((name, f) if (f := self._open(name)) else None)
                    )
                    if found is None:
                        return closure, Failure("missing-library", name, obj.path)
                    dep = next((o for o in (*self.loaded, *new) if o.file_id == found[1].file_id), None)
                    if dep is None:
                        dep = Loaded(found[0], found[1], {name, found[1].elf.info.soname} - {""}, found[1].file_id)
                        new.append(dep)
                    else:
                        dep.names.add(name)
                if all(dep is not c for c in closure):
                    closure.append(dep)
                    parents[id(dep)] = [obj, *parents[id(obj)]]
        failure = _versions(new, closure) or self._relocate(new, closure)
        if failure is None:
            self.loaded += new
            if global_:
                self.executable = self.executable or closure[0]
                self.global_scope += [o for o in closure if o not in self.global_scope]
        return closure, failure

    def _relocate(self, new: list[Loaded], closure: list[Loaded]) -> Failure | None:
        scope = [*self.global_scope, *closure]
        ids = {self.index.add(o.path, o.elf) for o in scope}
        plain_ids = {i for i in ids if not self.index.has_versions[i]}
        for obj in reversed(new):
            unbound = {
                name
                for name, version, _file, weak in obj.elf.imports
                if not weak and not self.index.binds(name, version, ids, plain_ids)
            }
            if unbound:
                order = self.store.relocation_order(obj.path)
                first = next((n for n in order if n in unbound), min(unbound))
                return Failure("undefined-symbol", first, obj.path, expected=_expected(first, scope))
        return None


_NONE: frozenset[int] = frozenset()


class Exports:
    """Which objects define each symbol, indexed once per object: binding a reference in a scope is
    then one lookup and a set intersection, not a walk over the scope (ld.so's rule as
    WheelElf.defines states it: a versioned reference takes a definition of that version, or any
    definition in an object without versions)."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.has_versions: list[bool] = []
        self.plain: dict[str, set[int]] = {}
        self.versioned: dict[str, set[int]] = {}

    def add(self, path: str, elf: WheelElf) -> int:
        if path in self.ids:
            return self.ids[path]
        i = self.ids[path] = len(self.has_versions)
        self.has_versions.append(bool(elf.info.verdefs))
        for name in elf.exported:
            self.plain.setdefault(name, set()).add(i)
        for name in elf.exported_versions:
            self.versioned.setdefault(name, set()).add(i)
        return i

    def binds(self, name: str, version: str, ids: set[int], plain_ids: set[int]) -> bool:
        if not version:
            return not self.plain.get(name, _NONE).isdisjoint(ids)
        if not self.versioned.get(f"{name}@{version}", _NONE).isdisjoint(ids):
            return True
        return not self.plain.get(name, _NONE).isdisjoint(plain_ids)


def _versions(new: list[Loaded], closure: list[Loaded]) -> Failure | None:
    """ld.so's version check: every version a new object requires of a library it links is defined there."""
    for obj in new:
        for _name, version, vfile, weak in obj.elf.imports:
            if not version or not vfile or weak:
                continue
            lib = next((o for o in closure if vfile in o.names), None)
            if lib is not None and lib.elf.info.verdefs and version not in lib.elf.info.verdefs:
                return Failure("missing-version", version, obj.path, (vfile,))
    return None


_NAMESPACE = re.compile(r"^_ZN[KVr]*(\d+)")


def _expected(symbol: str, scope: list[Loaded]) -> str:
    """The object of the scope exporting most symbols of the C++ namespace `symbol` is in (c10 for
    `_ZN3c108ListType3getE...`): the library that should have had it."""
    m = _NAMESPACE.match(symbol)
    if m is None:
        return ""
    space = symbol[m.end() : m.end() + int(m.group(1))]
    prefix = f"{len(space)}{space}"
    counts = [
        (sum(1 for n in o.elf.exported if n.startswith(("_ZN" + prefix, "_ZNK" + prefix))), o.path) for o in scope
    ]
    best = max(counts, default=(0, ""))
    return best[1] if best[0] else ""
