"""Run foreign-architecture containers on this host: qemu-user-static through binfmt_misc.

The kernel runs an aarch64 binary through qemu when binfmt_misc has a qemu-aarch64 entry with
the F flag (the interpreter is opened at registration, so it works inside containers too)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from jetwheel.errors import RunnerError

BINFMT = Path("/proc/sys/fs/binfmt_misc")
QEMU_NAMES = {"aarch64": "qemu-aarch64"}


def ensure_emulation(arch: str) -> str:
    """Make `arch` binaries runnable here; returns the binfmt entry's interpreter line."""
    name = QEMU_NAMES.get(arch)
    if name is None:
        raise RunnerError(f"no emulation for {arch!r}; supported: {', '.join(QEMU_NAMES)}")
    if not (BINFMT / "register").exists():
        done = subprocess.run(
            ["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RunnerError(f"cannot mount binfmt_misc: {done.stderr.strip()} (needs root)")
    entry = BINFMT / name
    if not entry.exists():
        if shutil.which("update-binfmts") is None:
            raise RunnerError("qemu-user-static is not installed (apt-get install qemu-user-static binfmt-support)")
        done = subprocess.run(["update-binfmts", "--enable", name], capture_output=True, text=True)
        if done.returncode != 0 or not entry.exists():
            raise RunnerError(f"update-binfmts --enable {name} failed: {done.stderr.strip()}")
    text = entry.read_text()
    if "enabled" not in text.splitlines()[0] or "F" not in next(
        (line for line in text.splitlines() if line.startswith("flags:")), ""
    ):
        raise RunnerError(f"{entry} is not enabled with the F flag; containers cannot use it")
    return next(line for line in text.splitlines() if line.startswith("interpreter"))
