"""One CUDA translation unit each of torchvision 0.21.0, torchaudio 2.6.0 and vLLM 0.8.1 (and the
tests' tiny extension), cross-compiled for sm_87 in the arm64 sysroot image (tests/test_aarch64_cuda.py's
units and flags), one at a time: wall seconds and the peak memory of the largest compile process
of each (GNU time from this host, an x86_64 binary that runs natively in the image like nvcc).

Usage: python3 bench/sysroot_units.py [--out bench/results/sysroot_units-DATE.txt]

Not measured here: the same units compiled natively for x86_64 (the image has no x86_64 g++ and
x86_64 torch; the CUDA 12.4 x86_64 image of `inv cuda.setup` would give that side)."""

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


def measure(image: str, root: Path) -> list[str]:
    """One line per unit: seconds and peak RSS of its largest process."""
    lines = []
    for name, (src, flags) in UNITS.items():
        cmd = f"/opt/time -f 'peak_kb=%M wall_s=%e' {NVCC} {flags} /b/{src} -o /b/{name}.o"
        start = time.monotonic()
        mounts = ["-v", f"{root}:/b", "-v", "/usr/bin/time:/opt/time:ro"]
        done = subprocess.run(
            ["podman", "run", "--rm", "--arch", "arm64", *mounts, image, "bash", "-c", cmd],
            capture_output=True,
            text=True,
        )
        took = time.monotonic() - start
        found = re.search(r"peak_kb=(\d+) wall_s=([\d.]+)", done.stderr)
        if done.returncode != 0 or not found:
            lines.append(f"{name}: FAILED ({done.stderr.strip().splitlines()[-1:]})")
            continue
        peak_mib = int(found.group(1)) / 1024
        lines.append(f"{name}: {src}: compile {found.group(2)} s (container {took:.1f} s), peak {peak_mib:.0f} MiB")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    ensure_emulation("aarch64")
    start = time.monotonic()
    image = ensure_sysroot_image(NAME)
    made = time.monotonic() - start
    with tempfile.TemporaryDirectory() as tmp:
        root = make_trees(Path(tmp))
        lines = [f"image {image}: ready in {made:.0f} s", *measure(image, root)]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
