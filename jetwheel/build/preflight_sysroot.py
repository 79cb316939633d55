"""Preflight for a profile whose image is a sysroot (it names what the image provides): each thing
the image lacks for a cross CUDA build, as a failed check with its fix (runners/sysroot.py)."""

from __future__ import annotations

from jetwheel.build.check import Check
from jetwheel.runners.sysroot import NEEDS, Need, lacks


def sysroot_checks(image: str, probe_argv: list[str], needs: tuple[Need, ...] = NEEDS) -> list[Check]:
    missing, error = lacks(probe_argv, needs)
    if error:
        return [Check(f"{image}: sysroot", False, f"the image did not run: {error}", "inv sysroot.setup")]
    if not missing:
        return [Check(f"{image}: sysroot", True, f"has {', '.join(n.what for n in needs)}")]
    return [Check(f"{image}: sysroot lacks {n.what}", False, "not found in the image", n.fix) for n in missing]
