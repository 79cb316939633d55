"""Run a step on this host: inside a JetPack container already, or for the mini stack anywhere."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from jetwheel.model.step import BuildStep
from jetwheel.runners.base import StepLog, failed, step_script, stream
from jetwheel.runners.ccache import CompilerCache
from jetwheel.runners.sccache import Sccache
from jetwheel.settings import Settings


class LocalRunner:
    name = "local"

    def __init__(
        self,
        extra_env: dict[str, str] | None = None,
        ccache: CompilerCache | None = None,
        *,
        settings: Settings,  # the run's: the environment a step starts from, the compiler cache by default
        sccache: Sccache | None = None,
    ) -> None:
        self.extra_env = extra_env or {}
        self.ccache = ccache or CompilerCache.of(settings)
        self.environ: Mapping[str, str] = settings.environ
        self.sccache = sccache  # None: ccache alone

    def run(self, step: BuildStep, workdir: Path, index_url: str, log: StepLog) -> None:
        env = {k: v for k, v in self.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV", "PYTHONPATH"))}
        env.update(self.ccache.env(str(self.ccache.directory), str(workdir)))
        if self.sccache:
            env.update(self.sccache.env(str(self.sccache.directory), str(workdir)))
            self.sccache.write_files(workdir, str(workdir))
        env.update(step.env)
        env.update(self.extra_env)
        env.update(JW_WORK=str(workdir), JW_SRC=str(workdir / "src"), JW_INDEX=index_url, PIP_INDEX_URL=index_url)
        code = stream(["bash", "-c", step_script(step)], log, cwd=workdir, env=env, start_new_session=True)
        if code != 0:
            raise failed(step, code, log)

    def probe_argv(self, image: str) -> list[str]:
        return ["bash", "-c"]

    def discard(self, step: BuildStep) -> None:
        """Nothing kept outside the work directory, which the engine removes."""
