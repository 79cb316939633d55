"""The doctor's examination, run inside the examined interpreter (this one, `--python`, or the
image's): every installed distribution from its RECORD, each extension module loaded in a model of
a fresh process (the packages it requires imported first, as its own package's import does), each
other shared library on its own, pins against Requires-Dist, torch operators a failing library
leaves unregistered, fatbins against the GPU. Prints one JSON document; standard library,
`packaging` and the ELF/fatbin readers only (they travel with it, see carry.py)."""

from __future__ import annotations

import argparse
import csv
import importlib.machinery
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from jetwheel.doctor import gpu, kernels, loads
from jetwheel.doctor.facts import FactStore
from jetwheel.verify.ldso import Failure, Loaded, Process, ld_cache

# Libraries the NVIDIA driver installs: their absence means no driver here, not a broken package.
DRIVER = re.compile(r"^lib(cuda|nvidia-[a-z-]+|nvcuvid|nvoptix)\.so(\.\d+)*$")
_SHARED = re.compile(r"\.so(\.\d+)*$")
_SCAN_LIMIT = 64 << 20  # extension modules larger than this are not read for their sibling imports
_OP = re.compile(rb"([A-Za-z_][A-Za-z0-9_]*)(\.[A-Za-z0-9_]+)?\(")


@dataclass
class Dist:
    name: str
    version: str
    requires: list[str]
    files: list[str]
    requirements: list[str] = field(default_factory=list)  # installed ones, markers evaluated


def distributions(paths: list[str]) -> dict[str, Dist]:
    """The distribution each name imports (the first on sys.path), with its RECORD's files."""
    out: dict[str, Dist] = {}
    for d in metadata.distributions(path=paths):
        name = canonicalize_name(d.metadata["Name"] or "")
        if not name or name in out:
            continue
        base = str(d.locate_file(""))
        # RECORD read as CSV directly: PackagePath objects for torch's 20k files cost seconds
        rows = csv.reader((d.read_text("RECORD") or "").splitlines())
        files = [os.path.normpath(os.path.join(base, row[0])) for row in rows if row]
        out[name] = Dist(name, d.version, list(d.requires or []), files)
    return out


def modules(dist: Dist, paths: list[str]) -> dict[str, str]:
    """module name -> the file the import system loads for it (the first extension suffix that exists)."""
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    roots = sorted((os.path.abspath(p) for p in paths if p), key=len, reverse=True)
    found: dict[str, dict[str, str]] = {}
    for f in dist.files:
        for s in suffixes:
            if f.endswith(s):
                root = next((r for r in roots if f.startswith(r + os.sep)), None)
                if root is not None:
                    stem = f[len(root) + 1 : -len(s)]
                    if "." not in stem:
                        found.setdefault(stem.replace(os.sep, "."), {})[s] = f
                break
    return {m: next(by[s] for s in suffixes if s in by) for m, by in found.items()}


def _evaluate(req: Requirement, env: dict[str, str]) -> bool:
    return req.marker is None or req.marker.evaluate(dict(env, extra=""))


class Doctor:
    def __init__(self, paths: list[str], store: FactStore, cc: int, driver: str) -> None:
        self.paths, self.store, self.cc, self.driver = paths, store, cc, driver
        self.env: dict[str, str] = {k: str(v) for k, v in default_environment().items()}
        self.dists = distributions(paths)
        self.items: list[dict[str, Any]] = []
        machine = os.uname().machine
        # the examined process's own environment (LD_LIBRARY_PATH, ...): the scan's input, read where
        # the scan runs (often a foreign interpreter, from the zipapp), not a setting of jetwheel's
        self.base = Process(store, machine, os.environ, ld_cache())
        _, fail = self.base.dlopen(os.path.realpath(sys.executable), global_=True)
        if fail is not None:
            self.items.append(
                {"kind": "unchecked", "subject": sys.executable, "detail": f"the interpreter itself: {asdict(fail)}"}
            )
        self.mods = {d.name: modules(d, paths) for d in self.dists.values()}
        self._ready: dict[tuple[str, ...], tuple[Process, dict[str, Any] | None]] = {}
        self.verdicts: dict[str, dict[str, Any]] = {}
        # every shared object examined: its verdict (failure None: it loads)
        self.objects: dict[str, dict[str, Any]] = {}
        self._named: dict[str, list[str]] = {}  # file name -> the environment's files of that name
        self._reqs: dict[str, list[tuple[Requirement, Dist | None]]] = {}
        self.code: dict[str, list[bytes]] = {}  # per distribution: its .py files that load libraries
        self.by_name: dict[str, bool] = {}  # per distribution: it loads NVIDIA libraries by name

    def requirements(self, dist: Dist) -> Iterator[tuple[Requirement, Dist | None]]:
        if dist.name not in self._reqs:  # parsed once: packaging's parser costs ms a requirement
            self._reqs[dist.name] = [
                (req, self.dists.get(canonicalize_name(req.name)))
                for raw in dist.requires
                if (req := _parse(raw)) is not None and _evaluate(req, self.env)
            ]
        yield from self._reqs[dist.name]

    def closure(self, dist: Dist) -> list[Dist]:
        """The installed distributions `dist` requires, transitively, dependencies first."""
        out: list[Dist] = []

        def visit(d: Dist, seen: set[str]) -> None:
            for _r, dep in self.requirements(d):
                if dep is not None and dep.name not in seen:
                    seen.add(dep.name)
                    visit(dep, seen)
                    out.append(dep)

        visit(dist, {dist.name})
        return out

    def gate(self, dist: Dist) -> str | None:
        """The extension module importing the package loads first (torch._C), if it has one."""
        gates = [m for m in self.mods[dist.name] if m.endswith("._C") and m.count(".") == 1]
        own = f"{dist.name.replace('-', '_')}._C"  # torch._C before functorch._C, both torch's
        return own if own in gates else next(iter(gates), None)

    def ready(self, dist: Dist) -> tuple[Process, dict[str, Any] | None]:
        """A process in which the packages `dist` requires were imported, and the first that fails."""
        gates = [(d, g) for d in self.closure(dist) if (g := self.gate(d)) is not None]
        key = tuple(g for _d, g in gates)
        if key not in self._ready:
            proc, failed = self.base.copy(), None
            for d, g in gates:
                _closure, fail = proc.dlopen(self.mods[d.name][g])
                if fail is not None:
                    failed = {"dist": d.name, "module": g, "failure": asdict(fail)}
                    break
            self._ready[key] = (proc, failed)
        return self._ready[key]

    def load(
        self, proc: Process, path: str, dist: Dist, keep: bool = False, module: str = ""
    ) -> tuple[list[Loaded], Failure | None]:
        """dlopen `path` as `dist` loads it: a package finding NVIDIA libraries by name (pathfinder)
        first loads, from the environment's nvidia/*/lib, the library its module is named after
        (cupy's `cupy_backends.cuda.libs.cusolver` and libcusolver.so.11, as its __getattr__ does);
        modules are examined in name order, the backends (cupy_backends) before their users (cupyx)."""
        target = proc if keep else proc.copy()
        leaf = module.rsplit(".", 1)[-1].lower()
        for _ in range(8):
            closure, fail = target.dlopen(path)
            if fail is None or fail.kind != "missing-library" or not self.by_name.get(dist.name):
                return closure, fail
            if not leaf or not fail.name.lower().startswith(f"lib{leaf}.so"):
                return closure, fail
            found = next((f for f in self.files_named(fail.name) if "/nvidia/" in f), None)
            if found is None or target.dlopen(found)[1] is not None:
                return closure, fail
            # it stays loaded for the package's other modules (cupyx.cusolver imports the backend
            # module, which loads libcusolver, before cupyx._cusolver)
            proc.dlopen(found)
        return closure, fail

    def files_named(self, name: str) -> list[str]:
        if not self._named:
            for d in self.dists.values():
                for f in d.files:
                    self._named.setdefault(os.path.basename(f), []).append(f)
        return sorted(self._named.get(name, []))

    def own(self, dist: Dist, proc: Process) -> Process:
        """The process after `dist`'s own code loaded the libraries it names (those that load)."""
        proc = proc.copy()
        todo = loads.own_loads(dist.files, self.code[dist.name])
        while todo:
            done = [f for f in todo if self.store.get(f) is not None and self.load(proc, f, dist, keep=True)[1] is None]
            if not done:
                break
            todo = [f for f in todo if f not in done]
        return proc

    def run(self) -> dict[str, Any]:
        self.store.prefetch([f for d in self.dists.values() for f in d.files if _SHARED.search(f)])
        for dist in self.dists.values():
            self.check_pins(dist)
            if not any(_SHARED.search(f) for f in dist.files):
                continue
            self.code[dist.name] = code = loads.sources(dist.files)
            self.by_name[dist.name] = loads.finds_nvidia_by_name(code)
            proc, failed = self.ready(dist)
            proc = self.own(dist, proc) if failed is None else proc
            after = [g for d in self.closure(dist) if (g := self.gate(d)) is not None]
            loaded: set[str] = set()
            for module, path in sorted(self.mods[dist.name].items()):
                # after: the modules the model loads first (the imports of the packages it requires)
                verdict: dict[str, Any] = {
                    "dist": dist.name,
                    "path": path,
                    "failure": None,
                    "via": None,
                    "after": after,
                }
                if failed is not None:
                    verdict["via"] = failed
                else:
                    closure, fail = self.load(proc, path, dist, module=module)
                    loaded |= {o.path for o in closure if o.path != path}
                    if fail is not None:
                        verdict["failure"] = asdict(fail)
                        self._candidates(verdict["failure"])
                        self.ops(dist, module, path)
                self.verdicts[module] = verdict
                self.objects[path] = verdict
            if failed is None:
                self.libraries(dist, proc, loaded)
            self.causes(dist)
        self.items += kernels.items({d.name: d.files for d in self.dists.values()}, self.store, self.cc, self.driver)
        return {
            "python": sys.version.split()[0],
            "executable": sys.executable,
            "machine": os.uname().machine,
            "cc": self.cc,
            "driver": self.driver,
            "modules": self.verdicts,
            "objects": self.objects,
            "items": self.items,
            "files": {"read": self.store.read, "cached": self.store.cached},
        }

    def _candidates(self, failure: dict[str, Any]) -> None:
        """For a library not found: where in the environment a file of that name is (not searched)."""
        if failure["kind"] == "missing-library":
            name = failure["name"]
            failure["candidates"] = self.files_named(name)[:3]

    def libraries(self, dist: Dist, proc: Process, loaded: set[str]) -> None:
        """Shared libraries no extension module links (loaded on demand): each dlopen'ed on its own."""
        modfiles = set(self.mods[dist.name].values())
        for f in dist.files:
            if not _SHARED.search(f) or f in modfiles or self.store.get(f) is None:
                continue
            if f in loaded:  # an extension module's dependency that loaded with it
                self.objects[f] = {"dist": dist.name, "path": f, "failure": None}
                continue
            _closure, fail = self.load(proc, f, dist)
            verdict: dict[str, Any] = {"dist": dist.name, "path": f, "failure": None}
            self.objects[f] = verdict
            if fail is None:
                continue
            verdict["failure"] = failure = asdict(fail)
            self._candidates(failure)
            self.items.append({"kind": "library", "dist": dist.name, "subject": f, "failure": failure})

    def causes(self, dist: Dist) -> None:
        """Per failing object of `dist`: the sibling whose failure it is (a library of the package
        that it needs and that fails itself), the optional part it belongs to, its run-time variants."""
        mine = {p: v for p, v in self.objects.items() if v["dist"] == dist.name}
        by_name = {os.path.basename(p): p for p in mine if self.store.get(p) is not None}  # files that exist
        self.sibling_imports(dist)
        for path, v in mine.items():
            f, seen = v["failure"], {path}
            if v.get("cause"):  # a sibling module it imports fails: that one's failure is the reason
                f = mine[v["cause"]]["failure"]
                seen.add(v["cause"])
            while f is not None and f["kind"] == "missing-library" and f["name"] in by_name:
                sibling = by_name[f["name"]]
                if sibling in seen or mine[sibling]["failure"] is None:
                    break
                seen.add(sibling)
                v["cause"], f = sibling, mine[sibling]["failure"]
            if f is not None and f["kind"] == "missing-library":
                if DRIVER.match(f["name"]):
                    v["driver"] = True
                elif self._late(dist, f["name"]):
                    v["late"] = f"{dist.name} loads {f['name']} by name (cuda-pathfinder) before it uses this module"
                elif why := loads.optional(dist.name, v.get("cause", path), f["name"]):
                    v["optional"] = why
        for base, files in loads.variants(mine).items():
            ok = [f for f in files if mine[f]["failure"] is None]
            for f in files:
                mine[f]["variants"] = {"base": base, "files": files, "loads": ok}

    def _late(self, dist: Dist, name: str) -> bool:
        """`name` is an NVIDIA library of the environment that dist's code loads by a literal name
        (cupy's nvrtc, loaded when it first compiles a kernel): when is not known here."""
        named = loads.named_nvidia(self.code.get(dist.name, []))
        return any(name.lower().startswith(f"lib{n}.so") for n in named) and any(
            "/nvidia/" in c for c in self.files_named(name)
        )

    def sibling_imports(self, dist: Dist) -> None:
        """An extension module whose file names a failing sibling module of its package (a Cython
        module imports what it cimports when it initialises: cupyx._cutensor holds the string
        `cupy_backends.cuda.libs.cutensor`) fails with that sibling, though it maps itself."""
        mods = self.mods[dist.name]
        failing = {m: p for m, p in mods.items() if self.objects.get(p, {}).get("failure") is not None}
        if not failing:
            return
        for path in mods.values():
            v = self.objects.get(path)
            if v is None or v["failure"] is not None or os.path.getsize(path) > _SCAN_LIMIT:
                continue
            with open(path, "rb") as fh:
                data = fh.read()
            sibling = next((m for m in sorted(failing) if b"\0" + m.encode() + b"\0" in data), None)
            if sibling is not None:
                v["failure"] = {"kind": "sibling-import", "name": sibling, "object": path}
                v["cause"] = failing[sibling]

    def ops(self, dist: Dist, module: str, path: str) -> None:
        """The torch operators the failing module would have registered (its schema strings)."""
        if not any(r.name == "torch" for r in (r for r in map(_parse, dist.requires) if r is not None)):
            return
        spaces = {module.split(".")[0], module.rsplit(".", 1)[-1]}
        try:
            data = Path(path).read_bytes()
        except OSError:
            return
        names = sorted({f"{ns}::{op}" for ns in spaces for op in _schemas(data, ns.encode())})
        if names:
            self.items.append({"kind": "ops", "dist": dist.name, "subject": module, "ops": names})

    def check_pins(self, dist: Dist) -> None:
        for req, dep in self.requirements(dist):
            if dep is None:
                self.items.append({"kind": "pins", "dist": dist.name, "requirement": _short(req), "installed": None})
                continue
            try:
                ok = req.specifier.contains(Version(dep.version), prereleases=True)
            except InvalidVersion:
                ok = False
            if not ok:
                self.items.append(
                    {"kind": "pins", "dist": dist.name, "requirement": _short(req), "installed": dep.version}
                )


def _schemas(data: bytes, ns: bytes) -> set[str]:
    """Operator names of the schema strings `ns::name(...)` / `ns::name.overload(...)` in a library
    (what TORCH_LIBRARY's m.def registers); found with bytes.find, a regex over 300 MB is seconds."""
    out, needle, at = set(), ns + b"::", data.find(ns + b"::")
    while at != -1:
        before = data[at - 1 : at] if at else b""
        m = _OP.match(data, at + len(needle))
        if m and not (before.isalnum() or before == b"_"):
            out.add(m[1].decode())
        at = data.find(needle, at + 1)
    return out


def _short(req: Requirement) -> str:
    """The requirement without its marker (already evaluated true here)."""
    return f"{req.name}{'[' + ','.join(sorted(req.extras)) + ']' if req.extras else ''}{req.specifier}"


def _parse(raw: str) -> Requirement | None:
    try:
        return Requirement(raw)
    except InvalidRequirement:
        return None


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="jetwheel-doctor-scan")
    p.add_argument("--arch", default="", help="compute capability, e.g. 8.7 (default: the GPU present)")
    p.add_argument("--driver", default="", help="the driver's CUDA version, e.g. 12.6 (default: the GPU's)")
    p.add_argument("--facts", default="", help="the fact cache directory")
    args = p.parse_args(argv)
    start = time.monotonic()
    found = gpu.probe()
    cc = int(args.arch.replace(".", "")) if args.arch else (found.cc if found else 0)
    driver = args.driver or (found.driver if found else "")
    store = FactStore(Path(args.facts) if args.facts else None)
    paths = [p for p in sys.path if p and os.path.isdir(p) and not p.endswith(".pyz")]
    doc = Doctor(paths, store, cc, driver).run()
    doc["gpu"] = asdict(found) if found else None
    doc["seconds"] = round(time.monotonic() - start, 2)
    json.dump(doc, sys.stdout)


if __name__ == "__main__":
    main()
