"""What a container engine offers a plan, asked of the engine itself before anything is built:
cores, memory and architecture (its `info`), whether it has the GPU (a trial container with the
GPU device, only when the plan asks for one) and which of the plan's images it already holds.

These facts decide which engine may take which step and each step's MAX_JOBS (schedule.py)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import RunnerError
from ..machine import Machine
from .docker import DockerRunner

# the engines' names for architectures, as Python's platform.machine() spells them
ARCHES = {"amd64": "x86_64", "x86_64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64"}
TIMEOUT = 60.0


@dataclass(frozen=True)
class EngineFacts:
    name: str  # as the user gave it: connection, context or URL
    cores: int
    memory_gb: float
    arch: str
    gpu: bool
    images: frozenset[str]  # those of the plan's images the engine holds

    @property
    def machine(self) -> Machine:
        return Machine(self.cores, self.memory_gb)

    def describe(self) -> str:
        gpu = ", GPU" if self.gpu else ""
        return f"{self.arch}, {self.cores} cores, {self.memory_gb:.0f} GiB{gpu}"


def _ask(runner: DockerRunner, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run([*runner.base(), *args], capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        raise RunnerError(f"engine {runner.connection}: no answer in {TIMEOUT:.0f}s") from None


def probe(runner: DockerRunner, images: Iterable[str], gpu: bool = False) -> EngineFacts:
    """Ask the engine behind `runner`; RunnerError when it does not answer."""
    done = _ask(runner, "info", "--format", "{{json .}}")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no answer"])[-1]
        raise RunnerError(f"engine {runner.connection or runner.engine}: {runner.engine} info failed: {last}")
    info = json.loads(done.stdout)
    if "host" in info:  # podman
        host = info["host"]
        cores, memory, arch = int(host["cpus"]), int(host["memTotal"]), str(host["arch"])
    else:  # docker
        cores, memory, arch = int(info["NCPU"]), int(info["MemTotal"]), str(info["Architecture"])
    images = sorted(set(images))
    held = frozenset(i for i in images if _ask(runner, "image", "inspect", "--format", "{{.Id}}", i).returncode == 0)
    has_gpu = False
    if gpu and held:
        # the same device arguments the step's container gets: true only if a container can have it
        trial = _ask(runner, "run", "--rm", *runner.gpu_args(), next(iter(sorted(held))), "true")
        has_gpu = trial.returncode == 0
    return EngineFacts(
        name=runner.connection or runner.engine,
        cores=cores,
        memory_gb=memory / (1 << 30),
        arch=ARCHES.get(arch, arch),
        gpu=has_gpu,
        images=held,
    )
