"""A podman layer made once and kept between runs: a script run in a throwaway container of an image,
committed under a name that says what went in; or a host directory a container fills once. Installing
torch takes minutes (under qemu, or from 2 GB of CUDA wheels), so the tests that need one share these."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path


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


def filled_dir(path: Path, image: str, script: str, at: str, run_args: tuple[str, ...] = (), shell: str = "sh") -> Path:
    """`path`, a host directory mounted at `at`, filled by `script` in a throwaway container of
    `image` unless an earlier run filled it: a venv of gigabytes mounted where a test needs it
    costs no `podman commit` (minutes, and its size again in /var/tmp) and no image."""
    if (path / ".done").exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    # a second caller (tests/prefetch.py's thread) waits, then finds it filled
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (path / ".done").exists():
            return path
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        made = subprocess.run(
            ["podman", "run", "--rm", "-v", f"{path}:{at}", *run_args, image, shell, "-c", script],
            capture_output=True,
            text=True,
        )
        assert made.returncode == 0, made.stderr[-2000:]
        (path / ".done").touch()
    return path
