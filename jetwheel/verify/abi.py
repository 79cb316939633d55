"""Every undefined dynamic symbol resolves, as the dynamic linker would resolve it, against the set
of wheels pip installs together plus what the target OS and JetPack provide.

Catches `undefined symbol: _ZN3c108ListType3get...` (an extension built against another torch)
and `operator torchvision::nms does not exist` (torchvision's _C failing to load beside this torch).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping

from packaging.version import InvalidVersion, Version

from .report import ERROR, Finding
from .wheel import Wheel, WheelElf, elves_by_soname

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


def _system_match(soname: str, system: Mapping[str, tuple[str, ...]]) -> tuple[str, ...] | None:
    for pattern, symbols in system.items():
        if fnmatch.fnmatchcase(soname, pattern):
            return symbols
    return None


def check(
    wheel: Wheel, closure: list[Wheel], system_libs: Mapping[str, tuple[str, ...]], system_versions: Mapping[str, str]
) -> list[Finding]:
    libs: dict[str, tuple[Wheel, WheelElf]] = {}
    for soname, w, e in elves_by_soname([wheel, *closure]):
        libs.setdefault(soname, (w, e))
    findings: list[Finding] = []
    for elf in wheel.elves:
        findings += _check_elf(wheel, elf, libs, system_libs, system_versions)
    return findings


def _check_elf(
    wheel: Wheel,
    elf: WheelElf,
    libs: Mapping[str, tuple[Wheel, WheelElf]],
    system_libs: Mapping[str, tuple[str, ...]],
    ceilings: Mapping[str, str],
) -> list[Finding]:
    out: list[Finding] = []
    # Breadth-first over DT_NEEDED, the order ld.so searches for a symbol in a dlopen()ed object.
    providers: list[tuple[str, Wheel, WheelElf]] = []
    system: dict[str, tuple[str, ...]] = {}
    queue, seen = list(elf.info.needed), set(elf.info.needed)
    while queue:
        soname = queue.pop(0)
        if soname in libs:
            w, e = libs[soname]
            providers.append((soname, w, e))
            for n in e.info.needed:
                if n not in seen:
                    seen.add(n)
                    queue.append(n)
            continue
        patterns = _system_match(soname, system_libs)
        if patterns is None:
            out.append(
                Finding(
                    "abi",
                    ERROR,
                    elf.member,
                    f"needs {soname}, which no wheel in the set and nothing the target system provides has",
                    f"add the wheel that ships {soname} to the set (--with), or list it under [system] libs in "
                    "the profile if JetPack provides it, or add it to the recipe's repair exclude only if it does",
                )
            )
        else:
            system[soname] = patterns
    missing: list[Finding] = []
    for u in elf.info.undefined:
        if u.weak:
            continue  # may legitimately stay unresolved (the code checks the address before calling)
        if u.version_file and u.version_file not in libs:
            allowed = _version_allowed(u.version, ceilings)
            family = u.version.partition("_")[0]
            if allowed is False:
                missing.append(
                    Finding(
                        "abi",
                        ERROR,
                        elf.member,
                        f"{demangle(u.name)}@{u.version} from {u.version_file} is newer than the target "
                        f"provides ({family} <= {ceilings.get(family)})",
                        "build in the target's image (JetPack's Ubuntu 22.04 toolchain), not a newer distribution",
                    )
                )
            continue
        if elf.info.defined.get(u.name) is not None:
            continue
        hit = next(
            (
                s
                for s, _w, e in providers
                if u.name in e.info.defined and (not u.version or u.version in e.info.defined[u.name])
            ),
            None,
        )
        if hit:
            continue
        if u.name.startswith(("Py", "_Py")):
            continue  # the interpreter that loads the extension exports the C API
        if any(any(fnmatch.fnmatchcase(u.name, p) for p in pats) for pats in system.values()):
            continue
        expected = ", ".join(f"{s} ({w.name} {w.version})" for s, w, _e in providers) or "no wheel library"
        elsewhere = next(
            (
                f"{s} ({w.name} {w.version})"
                for s, (w, e) in libs.items()
                if u.name in e.info.defined and s not in {p[0] for p in providers}
            ),
            "",
        )
        detail = f"undefined symbol {demangle(u.name)} [{u.name}]"
        detail += (
            f" not defined by {expected}" if not elsewhere else f": defined in {elsewhere}, which it does not link"
        )
        missing.append(
            Finding(
                "abi",
                ERROR,
                elf.member,
                detail,
                "rebuild this wheel against the exact dependency wheels it will be installed with "
                "(the profile's pins, installed from this index)",
            )
        )
    if len(missing) > MAX_PER_FILE:
        rest = len(missing) - MAX_PER_FILE
        missing = [*missing[:MAX_PER_FILE], Finding("abi", ERROR, elf.member, f"... and {rest} more undefined symbols")]
    return out + missing
