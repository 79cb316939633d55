"""Podman services on this machine standing in for several build hosts (tests/test_fleet.py,
bench/fleet.py). They share this machine's image store, which is what lets each use the base image."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def podman_services(run: Path, count: int) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """`count` `podman system service` processes on sockets under `run`, by engine URL."""
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for n in range(1, count + 1):
            sock = run / f"podman-{n}.sock"
            procs[f"unix://{sock}"] = subprocess.Popen(
                ["podman", "system", "service", "--time=0", f"unix://{sock}"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        deadline = time.time() + 30
        while not all(Path(u[len("unix://") :]).exists() for u in procs) and time.time() < deadline:
            time.sleep(0.2)
        yield procs
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
                p.wait(10)
