"""Emulated vs cross compile of mini-vision's native code for aarch64 (bench, opt-in).

Emulated: g++ inside the arm64 container under qemu (what the docker runner with --arch aarch64
does). Cross: Debian's aarch64-linux-gnu-g++ on this host, the arm64 rootfs supplying the Python
headers. Same sources, same flags; prints both times and the ratio."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jetwheel.runners.baseimage import BUILDER_ARM64

ROOT = Path(__file__).resolve().parents[1]
EX = ROOT / "recipes" / "examples"
ROOTFS = Path("/var/cache/jetwheel/rootfs-bookworm-aarch64")
IMAGE = BUILDER_ARM64


def commands(cxx: str, src: Path, out: Path, py_include: list[str]) -> list[list[str]]:
    inc = ["-I", f"{src}/mini-torch/mini_torch/include"]
    return [
        [
            cxx,
            "-shared",
            "-fPIC",
            "-O2",
            *inc,
            "-Wl,-soname,libminitorch.so",
            "-o",
            f"{out}/libminitorch.so",
            f"{src}/mini-torch/csrc/minitorch.cpp",
        ],
        [
            cxx,
            "-shared",
            "-fPIC",
            "-O2",
            *inc,
            *py_include,
            "-o",
            f"{out}/_C.so",
            f"{src}/mini-vision/csrc/vision.cpp",
            f"-L{out}",
            "-lminitorch",
        ],
    ]


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        started = time.perf_counter()
        script = " && ".join(
            " ".join(c) for c in commands("g++", Path("/src"), Path("/out"), ["-I", "/usr/include/python3.11"])
        )
        subprocess.run(
            [
                "podman",
                "run",
                "--rm",
                "--arch",
                "arm64",
                "-v",
                f"{EX}:/src:ro",
                "-v",
                f"{out}:/out",
                IMAGE,
                "sh",
                "-c",
                script,
            ],
            check=True,
        )
        emulated = time.perf_counter() - started
        started = time.perf_counter()
        for cmd in commands(
            "aarch64-linux-gnu-g++",
            EX,
            out,
            ["-I", f"{ROOTFS}/usr/include/python3.11", "-idirafter", f"{ROOTFS}/usr/include"],
        ):
            subprocess.run(cmd, check=True)
        cross = time.perf_counter() - started
        machine = subprocess.run(["file", "-b", str(out / "_C.so")], capture_output=True, text=True).stdout
    print(
        f"mini-vision native code for aarch64: emulated (qemu, g++ in the arm64 container) {emulated:.1f} s, "
        f"cross (aarch64-linux-gnu-g++) {cross:.1f} s"
    )
    print(f"ratio emulated / cross: {emulated / cross:.1f}x   ({machine.split(',')[1].strip()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
