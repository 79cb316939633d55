"""Runners execute one build step's commands: on this host (`local`) or in a container (`docker`)."""

from __future__ import annotations

from .base import Runner, StepLog, step_script
from .docker import DockerRunner
from .local import LocalRunner

__all__ = ["DockerRunner", "LocalRunner", "Runner", "StepLog", "make_runner", "step_script"]


def make_runner(
    name: str, engine: str = "", connection: str = "", gpu: bool = False, arch: str = "", memory: str = ""
) -> Runner:
    if name == "local":
        return LocalRunner()
    if name == "cross":
        from .baseimage import CACHE
        from .cross import CrossRunner

        return CrossRunner(arch or "aarch64", CACHE / f"rootfs-bookworm-{arch or 'aarch64'}")
    return DockerRunner(engine=engine, connection=connection, gpu=gpu, arch=arch, memory=memory)
