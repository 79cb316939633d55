"""The extension modules a recipe promises are in the wheel under a file name the target's
CPython imports, built for the target's machine.

Catches `ModuleNotFoundError: No module named 'vllm._C'` (a wheel built without its extensions,
or for another Python)."""

from __future__ import annotations

from jetwheel.target import Target
from jetwheel.verify.report import ERROR, Finding
from jetwheel.verify.wheel import Wheel


def extension_suffixes(target: Target) -> tuple[str, ...]:
    """importlib.machinery.EXTENSION_SUFFIXES of the target's CPython on Linux, e.g.
    ('.cpython-312-aarch64-linux-gnu.so', '.abi3.so', '.so')."""
    return (f".cpython-{target.python.replace('.', '')}-{target.machine}-linux-gnu.so", ".abi3.so", ".so")


def check(wheel: Wheel, expected: tuple[str, ...], target: Target) -> list[Finding]:
    findings: list[Finding] = []
    elves = {e.member: e for e in wheel.elves}
    suffixes = extension_suffixes(target)
    for module in expected:
        stem = module.replace(".", "/")
        importable = [stem + s for s in suffixes if stem + s in wheel.libraries]
        if not importable:
            others = [m for m in wheel.libraries if m.startswith(stem + ".") and m.endswith(".so")]
            findings.append(
                Finding(
                    "extensions",
                    ERROR,
                    others[0] if others else wheel.filename,
                    f"extension {module} cannot be imported by CPython {target.python} on {target.machine}: "
                    + (
                        f"{', '.join(others)} is for another Python or machine; "
                        f"it would load {stem}{{{','.join(suffixes)}}}"
                        if others
                        else f"no {stem}.*.so in the wheel"
                    ),
                    "build with the profile's Python (python_exe) so the module gets the right suffix"
                    if others
                    else "the build skipped its extensions: check the build log for the CMake/CUDA step, "
                    "set the recipe's env (e.g. VLLM_TARGET_DEVICE=cuda) and rebuild",
                )
            )
            continue
        # the first suffix that exists is the file the import system loads
        m = importable[0]
        e = elves.get(m)
        if e is None:
            findings.append(Finding("extensions", ERROR, m, f"{module} is not an ELF shared object"))
        elif e.info.machine != target.machine:
            findings.append(
                Finding(
                    "extensions",
                    ERROR,
                    m,
                    f"{module} is built for {e.info.machine}, the target is {target.machine}",
                    "build inside the target's container (docker runner with --arch) or with its cross compiler",
                )
            )
    return findings
