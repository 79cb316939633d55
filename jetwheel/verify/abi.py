"""Every ELF file of a wheel loads, and every undefined dynamic symbol binds, as ld.so would do it
in the Python process on the target, with the set of wheels pip installs together.

Catches `undefined symbol: _ZN3c108ListType3get...` (an extension built against another torch)
and `operator torchvision::nms does not exist` (torchvision's _C failing to load beside this torch).

The rules are ld.so's, no stricter (where a library is found: loader.py):
- A reference binds to a definition in the object's breadth-first DT_NEEDED closure or in the
  interpreter's global scope (the CPython C API `Py*`/`_Py*` and the C library the interpreter
  links). An unversioned reference binds to an unversioned, base or default (`@@`) definition; a
  versioned one to that version, default or hidden, or to any definition in an object that has no
  version definitions. Weak references may stay unbound. STB_GNU_UNIQUE definitions count. An
  unversioned reference to the C++ runtime (`std::`, `operator new`, `__cxa_*`; PyPI's aarch64
  libtorch.so has them) binds to its default version, as one to a C name binds to glibc's.
- References versioned against a system library are checked against the profile's ceilings
  (GLIBC, GLIBCXX, CXXABI, GCC), not symbol by symbol.

A library found nowhere is an error when importing one of the extensions the recipe promises loads
it (or any ELF file, when no recipe says which). When only a module nothing promised loads needs
it (torchaudio's sox and ffmpeg backends, loaded on demand and skipped where their library is not
installed) it is a warning, and so is that module's fatbin lacking the target's GPU (vLLM's
Hopper-only _flashmla_C).
"""

from __future__ import annotations

from collections.abc import Mapping

from packaging.version import InvalidVersion, Version

from jetwheel.target import Target
from jetwheel.verify.loader import INTERPRETER_LIBS, Found, Loader, matches
from jetwheel.verify.report import ERROR, WARNING, Finding
from jetwheel.verify.wheel import Wheel, WheelElf

MAX_PER_FILE = 25


def demangle(name: str) -> str:
    try:
        import cxxfilt

        return str(cxxfilt.demangle(name))
    except Exception:
        return name


def _version_allowed(version: str, ceilings: Mapping[str, str]) -> bool | None:
    """True/False when the version's family (GLIBC, GLIBCXX, CXXABI, GCC) has a ceiling; None if not."""
    prefix, _, number = version.partition("_")
    if prefix not in ceilings:
        return None
    try:
        return Version(number) <= Version(ceilings[prefix])
    except InvalidVersion:
        return False  # GLIBC_PRIVATE and the like: never part of a stable ABI


def required(loader: Loader, wheel: Wheel, modules: tuple[str, ...]) -> set[str]:
    """The members of `wheel` that importing the promised extension modules loads (every ELF
    member when nothing is promised)."""
    roots = [e for e in wheel.elves if any(_is_module(e.member, m) for m in modules)]
    if not modules or not roots:
        return {e.member for e in wheel.elves}
    out = {e.member for e in roots}
    for e in roots:
        out |= {f.elf.member for _n, f in loader.closure(e) if f.elf is not None and f.wheel is wheel}
    return out


def _is_module(member: str, module: str) -> bool:
    stem = module.replace(".", "/")
    return member.startswith(stem + ".") and member.endswith(".so")


def check(wheel: Wheel, loader: Loader, target: Target, needed: set[str]) -> list[Finding]:
    """Findings for `wheel`, whose members in `needed` (see `required`) must load."""
    findings: list[Finding] = []
    unchecked: dict[str, str] = {}
    skipped = 0
    for elf in wheel.elves:
        found, n, outside = _check_elf(elf, loader, target.system_versions, elf.member in needed)
        findings += found
        skipped += n
        unchecked.update(outside)
    if unchecked:
        reqs = sorted({str(r) for top in set(unchecked.values()) for r in loader.installers(wheel, top)})
        dirs = sorted(set(unchecked.values()))
        findings.append(
            Finding(
                "abi",
                WARNING,
                wheel.filename,
                f"not checked: {', '.join(sorted(unchecked))} are looked up first outside the verified set "
                f"(RPATH/RUNPATH into site-packages/{{{','.join(dirs)}}}, which no wheel of the set installs); "
                f"{skipped} symbol references that may bind to them were not checked"
                + (f"; requirements outside the set that install them: {', '.join(reqs)}" if reqs else ""),
                "pass those wheels with --with to check them too",
            )
        )
    return findings


def _check_elf(
    elf: WheelElf, loader: Loader, ceilings: Mapping[str, str], required: bool
) -> tuple[list[Finding], int, dict[str, str]]:
    """(findings, references left unchecked, outside libraries: soname -> directory)."""
    found = loader.closure(elf)
    providers = [f.elf for _n, f in found if f.elf is not None]
    system = [f.patterns for _n, f in found if f.kind == "system" and f.patterns is not None]
    interpreter = [f for lib in INTERPRETER_LIBS if (f := loader.system_found(lib)) is not None]
    system += [f.patterns for f in interpreter if f.patterns is not None]
    providers += [f.elf for f in interpreter if f.elf is not None]
    outside = {n: f for n, f in found if f.kind == "outside"}
    by_name = {n: f for n, f in found}
    lost = [n for n, f in found if f.kind == "missing"]
    out = [_lost(elf, lost, loader, required)] if lost else []
    missing: list[Finding] = []
    skipped = 0
    for name, version, vfile, weak in elf.imports:
        if weak:
            continue  # may stay unbound: the code checks the address before calling
        if vfile and by_name.get(vfile, Found("set")).kind != "set":
            if by_name[vfile].kind == "outside":
                skipped += 1
            elif (bad := _versioned_system(elf, name, version, vfile, by_name[vfile], loader, ceilings)) is not None:
                missing.append(bad)
            continue
        if any(p.defines(name, version) for p in providers):
            continue
        if not version and name.startswith(("Py", "_Py")):
            continue  # the interpreter that loads the extension exports the C API
        if any(matches(name, pats) for pats in system):
            continue
        if any(
            (f.patterns is None and not name.startswith("_Z")) or matches(name, f.patterns or ())
            for f in outside.values()
        ):
            skipped += 1
            continue
        if lost:
            skipped += 1  # could come from the library that is not there, reported above
            continue
        missing.append(_undefined(elf, name, providers, loader))
    if len(missing) > MAX_PER_FILE:
        rest = len(missing) - MAX_PER_FILE
        missing = [*missing[:MAX_PER_FILE], Finding("abi", ERROR, elf.member, f"... and {rest} more undefined symbols")]
    return out + missing, skipped, {n: f.where for n, f in outside.items()}


def _lost(elf: WheelElf, lost: list[str], loader: Loader, required: bool) -> Finding:
    """The libraries of elf's closure found nowhere: an error when a promised module loads elf."""
    names = ", ".join(lost)
    return Finding(
        "abi",
        ERROR if required else WARNING,
        elf.member,
        f"needs {names}, which no wheel in the set and nothing the target system provides has"
        + (
            ""
            if required
            else "; nothing the recipe promises loads it: a module loaded on demand, where they are installed"
        ),
        f"add the wheel that ships {names} to the set (--with), or ship it in the runtime tarball "
        f"(inv runtime.tarball) beside the runtime read from its image ({loader.target.system_policy})"
        if loader.target.system_policy
        else f"add the wheel that ships {names} to the set (--with), or list it under [system] libs in "
        "the profile if the target provides it",
    )


def _versioned_system(  # params: one versioned reference, and where the loader found its library
    elf: WheelElf, name: str, version: str, vfile: str, lib: Found, loader: Loader, ceilings: Mapping[str, str]
) -> Finding | None:
    """A reference versioned against a system library: bound exactly against the runtime's own
    library when one was read from its image, else against the profile's version ceilings."""
    if lib.kind != "system":
        return None
    if lib.elf is not None:
        if lib.elf.defines(name, version):
            return None
        return Finding(
            "abi",
            ERROR,
            elf.member,
            f"{demangle(name)}@{version} is not exported by {vfile} of the runtime ({loader.target.system_policy})",
            "build against the runtime's own version of that library (the profile's image)",
        )
    if _version_allowed(version, ceilings) is not False:
        return None
    family = version.partition("_")[0]
    return Finding(
        "abi",
        ERROR,
        elf.member,
        f"{demangle(name)}@{version} from {vfile} is newer than the target provides "
        f"({family} <= {ceilings.get(family)})",
        "build in the target's image (JetPack's Ubuntu 22.04 toolchain), not a newer distribution",
    )


def _undefined(elf: WheelElf, name: str, providers: list[WheelElf], loader: Loader) -> Finding:
    names = {id(p) for p in providers}
    linked = ", ".join(
        f"{n} ({w.name} {w.version})"
        for n, (w, e) in loader.by_name.items()
        if id(e) in names and n == (e.info.soname or n)
    )
    elsewhere = next(
        (
            f"{n} ({w.name} {w.version})"
            for n, (w, e) in loader.by_name.items()
            if id(e) not in names and e.defines(name, "")
        ),
        "",
    )
    detail = f"undefined symbol {demangle(name)} [{name}]"
    detail += (
        f": defined in {elsewhere}, which it does not link"
        if elsewhere
        else f" not defined by {linked or 'any library it links'}"
    )
    return Finding(
        "abi",
        ERROR,
        elf.member,
        detail,
        "rebuild this wheel against the exact dependency wheels it will be installed with "
        "(the profile's pins, installed from this index)",
    )
