"""Runners execute one build step's commands: on this host (`local`) or in a container (`docker`)."""

from __future__ import annotations

from jetwheel.exhaustive import assert_never
from jetwheel.model.runnerkind import RunnerKind
from jetwheel.runners.base import Runner, StepLog, step_script
from jetwheel.runners.docker import DockerRunner
from jetwheel.runners.local import LocalRunner
from jetwheel.runners.sccache import Sccache
from jetwheel.settings import Settings

__all__ = ["DockerRunner", "LocalRunner", "Runner", "StepLog", "make_runner", "step_script"]


def make_runner(  # params: build-wheel's runner flags, each its own, and the run's settings
    kind: RunnerKind,
    settings: Settings,
    engine: str = "",
    connection: str = "",
    gpu: bool = False,
    arch: str = "",
    memory: str = "",
    sccache: Sccache | None = None,
) -> Runner:
    """`sccache`: the compiler cache settings the workflow resolved (None: ccache alone)."""
    match kind:
        case "local":
            return LocalRunner(settings=settings, sccache=sccache)
        case "cross":
            from jetwheel.runners.baseimage import CACHE
            from jetwheel.runners.cross import CrossRunner

            return CrossRunner(arch or "aarch64", CACHE / f"rootfs-bookworm-{arch or 'aarch64'}", settings, sccache)
        case "docker":
            return DockerRunner(engine, connection, gpu, arch, memory=memory, settings=settings, sccache=sccache)
        case _:
            assert_never(kind)
