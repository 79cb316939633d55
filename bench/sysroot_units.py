"""One CUDA translation unit each of torchvision 0.21.0, torchaudio 2.6.0 and vLLM 0.8.1 (and the
tests' tiny extension), cross-compiled for sm_87 in the arm64 sysroot image (tests/test_aarch64_cuda.py's
units and flags), one at a time: wall seconds and the peak memory of the largest compile process
of each (GNU time from this host, an x86_64 binary that runs natively in the image like nvcc).

With --native, each unit is also compiled for an x86_64 host right after its cross compile, same
nvcc 12.4, same flags, g++-13 for x86_64, in the x86_64 CUDA image of `inv cuda.setup`: the peer.
Its headers are the sysroot's own (torch's include tree and Python 3.13's, read from the mounted
image; pyconfig.h is aarch64's, the same LP64 sizes), so the two differ only in the host compiler's
target. The ratio cross/native says what the sysroot's cross compile costs over a native one.

Usage: python3 bench/sysroot_units.py [--native] [--out bench/results/sysroot_units-DATE.txt]"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from test_aarch64_cuda import NVCC, UNITS, make_trees  # noqa: E402

from jetwheel.runners.emulation import ensure_emulation  # noqa: E402
from jetwheel.runners.sysrootimage import NAME, ensure_sysroot_image  # noqa: E402

NATIVE_IMAGE = "localhost/jetwheel-cuda:12.4-trixie"
TORCH_INC = "/usr/lib/python3/dist-packages/torch/include"


def compile_once(argv: list[str], cmd: str) -> tuple[float, float] | str:
    """(wall seconds, peak MiB) of one compile in a fresh container, or why it failed."""
    done = subprocess.run(
        [*argv, "bash", "-c", f"/opt/time -f 'peak_kb=%M wall_s=%e' {cmd}"], capture_output=True, text=True
    )
    found = re.search(r"peak_kb=(\d+) wall_s=([\d.]+)", done.stderr)
    if done.returncode != 0 or not found:
        return f"FAILED ({done.stderr.strip().splitlines()[-1:]})"
    return float(found.group(2)), int(found.group(1)) / 1024


# Debian's torch/include holds links to /usr/include/{ATen,c10,caffe2,torch}; the x86_64 image has
# none of these, nor the fmt and pybind11 they include
HEADERS = ("ATen", "c10", "caffe2", "torch", "fmt", "pybind11", "python3.13")


def native_argv(root: Path, sysroot: Path) -> list[str]:
    """The x86_64 CUDA image with the sysroot's headers where the flags look for them."""
    mounts = ["-v", f"{root}:/b", "-v", "/usr/bin/time:/opt/time:ro", "-v", f"{sysroot}{TORCH_INC}:{TORCH_INC}:ro"]
    for name in HEADERS:
        if (sysroot / "usr/include" / name).exists():
            mounts += ["-v", f"{sysroot}/usr/include/{name}:/usr/include/{name}:ro"]
    pyconfig = "python3.13"
    mounts += ["-v", f"{sysroot}/usr/include/aarch64-linux-gnu/{pyconfig}:/usr/include/x86_64-linux-gnu/{pyconfig}:ro"]
    return ["podman", "run", "--rm", *mounts, NATIVE_IMAGE]


def measure(image: str, root: Path, sysroot: Path | None) -> list[str]:
    """One line per unit: seconds and peak RSS of its largest process, cross and (with a mounted
    sysroot) native, one right after the other."""
    lines, cross_total, native_total = [], 0.0, 0.0
    arm64 = ["podman", "run", "--rm", "--arch", "arm64"]
    cross_argv = [*arm64, "-v", f"{root}:/b", "-v", "/usr/bin/time:/opt/time:ro", image]
    for name, (src, flags) in UNITS.items():
        cross = compile_once(cross_argv, f"{NVCC} {flags} /b/{src} -o /b/{name}.o")
        if isinstance(cross, str):
            lines.append(f"{name}: cross {cross}")
            continue
        line = f"{name}: {src}: cross {cross[0]:.1f} s, peak {cross[1]:.0f} MiB"
        if sysroot is not None:
            native = compile_once(
                native_argv(root, sysroot), f"{NVCC} -ccbin g++-13 {flags} /b/{src} -o /b/{name}-x86_64.o"
            )
            if isinstance(native, str):
                line += f"; native {native}"
            else:
                cross_total, native_total = cross_total + cross[0], native_total + native[0]
                ratio = cross[0] / native[0]
                line += f"; native x86_64 {native[0]:.1f} s, peak {native[1]:.0f} MiB; cross/native {ratio:.2f}"
        lines.append(line)
    if native_total:
        lines.append(
            f"all units: cross {cross_total:.1f} s, native {native_total:.1f} s, "
            f"cross/native {cross_total / native_total:.2f}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="")
    parser.add_argument("--native", action="store_true", help="also compile each unit for x86_64 (the peer)")
    args = parser.parse_args()
    ensure_emulation("aarch64")
    start = time.monotonic()
    image = ensure_sysroot_image(NAME)
    made = time.monotonic() - start
    with tempfile.TemporaryDirectory() as tmp:
        root = make_trees(Path(tmp))
        sysroot = None
        if args.native:
            mounted = subprocess.run(["podman", "image", "mount", image], capture_output=True, text=True, check=True)
            sysroot = Path(mounted.stdout.strip())
        try:
            lines = [f"image {image}: ready in {made:.0f} s", *measure(image, root, sysroot)]
        finally:
            if sysroot is not None:
                subprocess.run(["podman", "image", "unmount", image], capture_output=True)
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
