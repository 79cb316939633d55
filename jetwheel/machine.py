"""Facts about the build host that a plan depends on: cores and memory."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Machine:
    cores: int
    memory_gb: float

    def max_jobs(self, job_memory_gb: float) -> int:
        """Parallel compile jobs that fit: nvcc/cicc on torch or vLLM sources peak at several GB a job,
        and a Jetson shares its memory with the GPU, so leave a fifth of it free."""
        by_memory = int(self.memory_gb * 0.8 // max(job_memory_gb, 0.1))
        return max(1, min(self.cores, by_memory))


def this_machine() -> Machine:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    with open("/proc/meminfo", encoding="ascii") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    return Machine(cores=cores, memory_gb=kb / (1024 * 1024))
