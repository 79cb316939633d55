"""A podman layer made once and kept between runs: a script run in a throwaway container of an image,
committed under a name that says what went in. Installing torch into an image takes minutes (under
qemu, or from 2 GB of CUDA wheels), so the tests that need one share this."""

from __future__ import annotations

import os
import subprocess


def committed_layer(name: str, image: str, script: str, run_args: tuple[str, ...] = (), shell: str = "sh") -> str:
    """`name`, made from `image` by running `script` under `shell` with `run_args` unless it exists."""
    if subprocess.run(["podman", "image", "exists", name]).returncode == 0:
        return name
    box = f"jetwheel-layer-{os.getpid()}"
    try:
        made = subprocess.run(
            ["podman", "run", "--name", box, *run_args, image, shell, "-c", script], capture_output=True, text=True
        )
        assert made.returncode == 0, made.stderr[-2000:]
        subprocess.run(["podman", "commit", "-q", box, name], check=True, capture_output=True)
    finally:
        subprocess.run(["podman", "rm", "-f", box], capture_output=True)
    return name
