"""The extension modules a recipe promises are in the wheel, built for its machine and Python ABI.

Catches `ModuleNotFoundError: No module named 'vllm._C'` (a wheel built without its extensions)."""

from __future__ import annotations

from .report import ERROR, Finding
from .wheel import Wheel


def _abi_suffixes(wheel: Wheel) -> list[str]:
    out = []
    for t in wheel.tags:
        if t.abi == "abi3":
            out.append(".abi3.so")
        elif t.abi.startswith("cp3"):
            out.append(f".cpython-{t.abi[2:].rstrip('mdu')}-")
    return out


def check(wheel: Wheel, expected: tuple[str, ...]) -> list[Finding]:
    findings: list[Finding] = []
    elves = {e.member: e for e in wheel.elves}
    suffixes = _abi_suffixes(wheel)
    for module in expected:
        stem = module.replace(".", "/")
        candidates = [m for m in wheel.members if m.startswith(stem + ".") and m.endswith(".so")]
        if not candidates:
            findings.append(
                Finding(
                    "extensions",
                    ERROR,
                    wheel.path.name,
                    f"extension {module} is missing (no {stem}.*.so in the wheel)",
                    "the build skipped its extensions: check the build log for the CMake/CUDA step, "
                    "set the recipe's env (e.g. VLLM_TARGET_DEVICE=cuda) and rebuild",
                )
            )
            continue
        for m in candidates:
            e = elves.get(m)
            if e is None:
                findings.append(Finding("extensions", ERROR, m, f"{module} is not an ELF shared object"))
                continue
            if wheel.machine and e.info.machine != wheel.machine:
                findings.append(
                    Finding(
                        "extensions",
                        ERROR,
                        m,
                        f"{module} is built for {e.info.machine}, the wheel is tagged {wheel.machine}",
                        "build inside the target's container (docker runner with --arch) or with its cross compiler",
                    )
                )
            if suffixes and not any(s in m for s in suffixes):
                findings.append(
                    Finding(
                        "extensions",
                        ERROR,
                        m,
                        f"{module}'s file name does not match the wheel's Python ABI "
                        f"({', '.join(sorted({t.abi for t in wheel.tags}))})",
                        "build with the profile's Python (python_exe) so the module gets the right suffix",
                    )
                )
    return findings
