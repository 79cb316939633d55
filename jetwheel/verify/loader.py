"""ld.so's search, for a set of wheels installed together into one site-packages on the target:
where each DT_NEEDED name is found, and an object's breadth-first DT_NEEDED closure (its symbol
search order). abi.py binds symbols against what it finds.

A DT_NEEDED name is found, in this order: glibc's own libraries (libc, libm, libpthread, libdl,
librt, libutil, the loader) on the system, always (the interpreter loaded them; ld.so reuses a
loaded object by SONAME, whatever a wheel bundles); in the directories of the object's
DT_RUNPATH, or of its DT_RPATH when it has no RUNPATH (`$ORIGIN` is the object's directory below
site-packages); among the libraries of the set by SONAME or file name (Python imports the
package that owns a library before its users, torch before torchvision); among the libraries
that the set's RPATH/RUNPATH load from outside the set (below); then on the target system: the
profile's `[system] libs`, with the machine's own loader name under `--platform`.

Libraries from dependency wheels outside the verified set are not downloaded, and never passed as
checked: x86_64 torch finds cuDNN & co. through its RPATH in site-packages/nvidia/*, installed by
its nvidia-*-cu12 requirements, which the profile does not pin. A RPATH/RUNPATH directory counts as
outside the set only where a requirement of the wheel outside the set (and not pinned) may install
it (its name contains the directory's: nvidia -> nvidia-cudnn-cu12); otherwise it is an empty
directory and the search goes on, as ld.so's does. Each wheel gets one warning naming the libraries
looked up there, those requirements, and how many references were left unchecked because of them.
Such a library is taken to export what the profile's system table says a library of that SONAME
exports, or, with no entry, C names only (NVIDIA's libraries export C APIs): a C++ symbol of torch
(`c10::`, `at::`) missing from the set is still an error.
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from jetwheel.target import Target
from jetwheel.verify import ldso
from jetwheel.verify.elf import Symbols
from jetwheel.verify.wheel import Wheel, WheelElf

# The libraries the interpreter itself links: their symbols are in every object's global scope.
INTERPRETER_LIBS = ("libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "libutil.so.1")
# glibc's own libraries: on every target (its version is the profile's GLIBC ceiling), so present
# even where the profile's table does not list them; unversioned C names bind to their default.
GLIBC = (*INTERPRETER_LIBS, "librt.so.1", "libresolv.so.2", "libanl.so.1", "ld-linux-*.so.*")
# What the C++ runtime exports, by the Itanium C++ ABI's names (namespace std, __gnu_cxx, the
# cxxabi support): an unversioned reference to one binds to its default version, as for the C
# library, whatever symbol patterns the profile's system table gives (its versions are checked
# against the profile's ceilings when the reference is versioned).
RUNTIME_EXPORTS = {
    "libstdc++.so.6": (
        *("_ZNSt*", "_ZNKSt*", "_ZSt*", "_ZT[VISTC]St*", "_ZT[VISTC]NSt*", "_ZGVNSt*"),
        *("_ZNS[oidsab]*", "_ZNKS[oidsab]*", "_ZT[VIST]S[oidsab]*", "_Z[nd][wal]*"),
        *("_ZN9__gnu_cxx*", "_ZNK9__gnu_cxx*", "_ZT[VIS]N9__gnu_cxx*", "_ZT[VIS]N10__cxxabiv1*"),
        *("_ZTI[a-zA-Z]", "_ZTIP*", "_ZTS[a-zA-Z]", "_ZTSP*", "__cxa_*", "__gxx_personality_v0", "__dynamic_cast"),
    ),
    "libgcc_s.so.1": ("_Unwind_*", "__*"),
}
# The GPU driver's libraries: the NVIDIA container runtime mounts them from the host when the
# container starts (on a Jetson, its l4t.csv), so no image's files hold them; with a runtime read
# from its image they keep the profile's table entry.
DRIVER = ("libcuda.so.1", "libnvidia-*.so*")
# The C and C++ runtime: always the system's, whatever RPATH says (no wheel may ship them).
RUNTIME = (*GLIBC, "libstdc++.so.6", "libgcc_s.so.1")


FoundKind = Literal["set", "outside", "system", "missing"]


@dataclass(frozen=True)
class Found:
    """Where ld.so finds a DT_NEEDED name: in the set, outside it (unchecked), on the system, or nowhere."""

    kind: FoundKind
    elf: WheelElf | None = None
    wheel: Wheel | None = None
    where: str = ""  # "outside": the directory (below site-packages) it comes from
    patterns: tuple[str, ...] | None = None  # symbol patterns it is taken to export (None: any C name)


@dataclass
class Loader:
    """The dynamic linker's view of a set of wheels installed together into one site-packages."""

    wheels: list[Wheel]
    target: Target
    by_path: dict[str, tuple[Wheel, WheelElf]] = field(default_factory=dict)
    by_name: dict[str, tuple[Wheel, WheelElf]] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)
    tops: set[str] = field(default_factory=set)  # top-level directories the set installs into
    outside: dict[str, str] = field(default_factory=dict)  # soname -> directory outside the set
    # per wheel: its requirements for the target that are neither in the set nor pinned
    unpinned: dict[str, list[Requirement]] = field(default_factory=dict)
    owner: dict[int, Wheel] = field(default_factory=dict)  # id(elf) -> its wheel
    system_elves: dict[str, WheelElf] = field(default_factory=dict)  # the runtime image's libraries, by name

    def __post_init__(self) -> None:
        names = {w.name for w in self.wheels}
        env = self.target.environment()
        for w in self.wheels:
            self.dirs |= {posixpath.dirname(m) for m in w.libraries}
            self.tops |= {m.split("/", 1)[0] for m in w.libraries}
            reqs = (Requirement(r) for r in w.requires)
            self.unpinned[w.filename] = [
                r
                for r in reqs
                if canonicalize_name(r.name) not in names
                and canonicalize_name(r.name) not in self.target.pins
                and (r.marker is None or r.marker.evaluate(env))
            ]
            for e in w.elves:
                self.owner[id(e)] = w
                self.by_path.setdefault(e.member, (w, e))
                for name in (e.info.soname, posixpath.basename(e.member)):
                    if name:
                        self.by_name.setdefault(name, (w, e))
        for w in self.wheels:
            for e in w.elves:
                for n in e.info.needed:
                    if n not in self.by_name and n not in self.outside:
                        where = self._outside(e, n)
                        if where is not None:
                            self.outside[n] = where

    def _outside(self, e: WheelElf, name: str) -> str | None:
        """The top-level directory of the first of e's RPATH/RUNPATH directories that a requirement
        outside the set installs (nvidia/cudnn/lib: nvidia-cudnn-cu12), where ld.so looks for `name`
        before the system; None if none. A directory no requirement can fill is just empty."""
        if any(fnmatch.fnmatchcase(name, p) for p in RUNTIME):
            return None
        for d in _search_dirs(e):
            top = d.split("/", 1)[0]
            if top not in self.tops and self.installers(self.owner[id(e)], top):
                return top
        return None

    def installers(self, wheel: Wheel, top: str) -> list[Requirement]:
        """The wheel's requirements outside the set that may install site-packages/<top>."""
        return [r for r in self.unpinned[wheel.filename] if top.replace("_", "-") in canonicalize_name(r.name)]

    def system(self, soname: str) -> tuple[str, ...] | None:
        if self.target.system_provided and not matches(soname, DRIVER):
            return None  # a runtime read from its image: exact exports (system_found), no patterns
        for pattern, symbols in self.target.system_libs.items():
            if fnmatch.fnmatchcase(soname, pattern):
                return (*symbols, *RUNTIME_EXPORTS.get(soname, ()))
        if any(fnmatch.fnmatchcase(soname, p) for p in GLIBC):
            return ("[!_]*",)
        return None

    def system_found(self, name: str) -> Found | None:
        """The target system's library of that name: exactly what the runtime image exports when
        one was read, else what the profile's table says; None when the system has none."""
        provided = self.target.system_provided.get(name)
        if provided is not None:
            if name not in self.system_elves:
                exports, verdefs, needed = provided
                info = Symbols("", name, needed, (), (), exports, "", verdefs)
                self.system_elves[name] = WheelElf(f"<{self.target.system_policy}>/{name}", info, ())
            return Found("system", self.system_elves[name])
        patterns = self.system(name)
        return Found("system", patterns=patterns) if patterns is not None else None

    def find(self, e: WheelElf, name: str, loaders: Sequence[WheelElf] = ()) -> Found:
        """Where ld.so finds `name` for e, loaded by `loaders` (nearest first)."""
        if any(fnmatch.fnmatchcase(name, p) for p in GLIBC):
            # loaded with the interpreter: ld.so reuses it by SONAME, whatever a wheel bundles
            return self.system_found(name) or Found("missing")
        for d in _search_dirs(e, loaders):
            if d in self.dirs:
                hit = self.by_path.get(posixpath.join(d, name))
                if hit:
                    return Found("set", hit[1], hit[0])
        hit = self.by_name.get(name)
        if hit:
            return Found("set", hit[1], hit[0])
        where = self._outside(e, name) or self.outside.get(name)
        if where is not None:
            return Found("outside", where=where, patterns=self.system(name))
        return self.system_found(name) or Found("missing")

    def closure(self, e: WheelElf) -> list[tuple[str, Found]]:
        """e's DT_NEEDED closure, breadth first (ld.so's symbol search order)."""
        out: list[tuple[str, Found]] = []
        chain: list[WheelElf] = []
        queue, seen = [(e, chain, n, False) for n in e.info.needed], set(e.info.needed)
        while queue:
            parent, loaders, name, systems = queue.pop(0)
            found = self.find(parent, name, loaders)
            if systems and found.kind == "missing":
                continue  # a system library's own dependency the runtime's directories lack: its business
            out.append((name, found))
            if found.elf is not None:
                below = [parent, *loaders]
                for n in found.elf.info.needed:
                    if n not in seen:
                        seen.add(n)
                        queue.append((found.elf, below, n, found.kind == "system"))
        return out


def _searcher(e: WheelElf) -> ldso.Searcher:
    # $ORIGIN as a marker ("\0" + the directory below site-packages): only entries made from it
    # name directories pip installs
    return ldso.Searcher("\0" + (posixpath.dirname(e.member) or "."), e.info.rpath, e.info.runpath)


def _search_dirs(e: WheelElf, loaders: Sequence[WheelElf] = ()) -> list[str]:
    """ld.so's directories for e's needs (ldso.search_dirs: e's DT_RUNPATH, else the DT_RPATH of e
    and of its loaders), as directories below site-packages. Absolute entries (a build machine's
    directories, like torchvision's /__w/_temp/...) and ones above site-packages name nothing pip
    installs, so they are left out; so is LD_LIBRARY_PATH, unknown on the target."""
    dirs = ldso.search_dirs(_searcher(e), [_searcher(o) for o in loaders])
    out = [posixpath.normpath(d[1:]) for d in dirs if d.startswith("\0")]
    return [d for d in out if not d.startswith("..")]


def matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)
