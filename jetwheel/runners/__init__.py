"""Runners execute one build step's commands: on this host (`local`) or in a container (`docker`)."""

from __future__ import annotations

from jetwheel.exhaustive import assert_never
from jetwheel.model.runnerkind import RunnerKind
from jetwheel.runners.base import Runner, StepLog, step_script
from jetwheel.runners.docker import DockerRunner
from jetwheel.runners.local import LocalRunner

__all__ = ["DockerRunner", "LocalRunner", "Runner", "StepLog", "make_runner", "step_script"]


def make_runner(
    kind: RunnerKind, engine: str = "", connection: str = "", gpu: bool = False, arch: str = "", memory: str = ""
) -> Runner:
    match kind:
        case "local":
            return LocalRunner()
        case "cross":
            from jetwheel.runners.baseimage import CACHE
            from jetwheel.runners.cross import CrossRunner

            return CrossRunner(arch or "aarch64", CACHE / f"rootfs-bookworm-{arch or 'aarch64'}")
        case "docker":
            return DockerRunner(engine=engine, connection=connection, gpu=gpu, arch=arch, memory=memory)
        case _:
            assert_never(kind)
