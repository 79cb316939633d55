"""The one prober of where a plan builds, asked before anything is built.

`probe`: what a container engine offers a plan, asked of the engine itself: cores, memory and
architecture (its `info`), whether it has the GPU (a trial container with the GPU device, only when
the plan asks for one) and which of the plan's images it already holds. These facts decide which
engine may take which step and each step's MAX_JOBS (schedule.py), and preflight checks them; a run
asks each engine once and passes the facts on.

`build_facts`: what a bash command sees inside one image (or on this host): its Python, nvcc and
GPU device, memory, swap and cores, free disk (preflight's environment and resource checks)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

from jetwheel.errors import RunnerError
from jetwheel.machine import Machine
from jetwheel.runners.docker import DockerRunner

# the engines' names for architectures, as Python's platform.machine() spells them
ARCHES = {"amd64": "x86_64", "x86_64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64"}
TIMEOUT = 60.0
BUILD_FACTS_TIMEOUT = 120  # a container start on a cold engine; an engine that does not answer fails faster


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


@dataclass(frozen=True)
class BuildFacts:
    """What a bash command saw where the runner builds (in the image, or on this host)."""

    ok: bool
    error: str
    facts: dict[str, str]


# One shell command gathers every fact; each line is key=value. $1: the interpreter, $2: a path
# whose free space counts.
BUILD_FACTS = r"""py="$1"; dir="$2"
echo "python=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)"
nv="$(command -v nvcc || echo "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc")"
echo "nvcc=$("$nv" --version 2>/dev/null | sed -n 's/.*release \([0-9][0-9.]*\).*/\1/p')"
echo "gpu=$(ls /dev/nvidia0 /dev/nvhost-ctrl-gpu /dev/nvgpu/igpu0/ctrl /dev/dri/renderD128 2>/dev/null | head -1)"
echo "mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
echo "swap_kb=$(awk '/^SwapTotal:/ {print $2}' /proc/meminfo)"
echo "cgroup_mem=$(cat /sys/fs/cgroup/memory.max 2>/dev/null)"
echo "cores=$(nproc)"
mkdir -p "$dir" 2>/dev/null
echo "disk_kb=$(df -Pk "$dir" 2>/dev/null | awk 'NR==2 {print $4}')"
echo "ccache=$(command -v ccache)"
"""


def build_facts(argv: list[str], python: str, path: str, timeout: float = BUILD_FACTS_TIMEOUT) -> BuildFacts:
    """BUILD_FACTS run by `argv` (a runner's probe_argv: `bash -c` here or in a container of the
    image), for the interpreter `python` and the disk of `path`; never raises for what it finds."""
    try:
        done = subprocess.run(
            [*argv, BUILD_FACTS, "probe", python, path], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return BuildFacts(False, f"no answer in {timeout:.0f}s", {})
    except OSError as e:
        return BuildFacts(False, str(e), {})
    facts = dict(line.partition("=")[::2] for line in done.stdout.splitlines() if "=" in line)
    if done.returncode != 0 or "python" not in facts:
        return BuildFacts(False, (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1], facts)
    return BuildFacts(True, "", facts)
