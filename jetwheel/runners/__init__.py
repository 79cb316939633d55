"""Runners execute one build step's commands: on this host (`local`) or in a container (`docker`)."""

from __future__ import annotations

from ..exhaustive import assert_never
from ..runnerkind import RunnerKind
from .base import Runner, StepLog, step_script
from .docker import DockerRunner
from .local import LocalRunner

__all__ = ["DockerRunner", "LocalRunner", "Runner", "StepLog", "make_runner", "step_script"]


def make_runner(
    kind: RunnerKind, engine: str = "", connection: str = "", gpu: bool = False, arch: str = "", memory: str = ""
) -> Runner:
    match kind:
        case "local":
            return LocalRunner()
        case "cross":
            from .baseimage import CACHE
            from .cross import CrossRunner

            return CrossRunner(arch or "aarch64", CACHE / f"rootfs-bookworm-{arch or 'aarch64'}")
        case "docker":
            return DockerRunner(engine=engine, connection=connection, gpu=gpu, arch=arch, memory=memory)
        case _:
            assert_never(kind)
