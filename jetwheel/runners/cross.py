"""Run a step on this host with a cross compiler for another machine, no emulation.

setuptools is pointed at the target through the variables CPython's own cross builds use:
_PYTHON_HOST_PLATFORM (the wheel's platform tag), _PYTHON_SYSCONFIGDATA_NAME (the target's
compiler, EXT_SUFFIX, ...; the module is copied from the target's root filesystem), CC/CXX and
the target's Python headers. The plan applies them to its compile commands only (see
plan.TARGET_ENV): venv, pip and auditwheel run natively.

It fits recipes whose build does not import binary dependencies. A build that imports one
(torchvision's setup.py imports torch; mini-vision's imports mini-torch) cannot load that
dependency's aarch64 extension here: such recipes need the emulated docker runner."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

from jetwheel.errors import RunnerError
from jetwheel.model.step import BuildStep
from jetwheel.runners.base import StepLog
from jetwheel.runners.local import LocalRunner
from jetwheel.runners.sccache import Sccache
from jetwheel.settings import Settings

TRIPLETS = {"aarch64": "aarch64-linux-gnu"}


class CrossRunner:
    name = "cross"

    def __init__(self, arch: str, rootfs: Path, settings: Settings, sccache: Sccache | None = None) -> None:
        self.sccache = sccache
        triplet = TRIPLETS.get(arch)
        if triplet is None:
            raise RunnerError(f"no cross toolchain known for {arch!r}; known: {', '.join(TRIPLETS)}")
        for tool in (f"{triplet}-gcc", f"{triplet}-g++"):
            if shutil.which(tool) is None:
                raise RunnerError(f"{tool} is not installed (apt-get install gcc-{triplet} g++-{triplet})")
        py = f"python{sys.version_info.major}.{sys.version_info.minor}"
        self.sysconfig = rootfs / "usr" / "lib" / py / f"_sysconfigdata__{triplet}.py"
        if not self.sysconfig.is_file():
            raise RunnerError(
                f"{rootfs} has no {py} for {arch} ({self.sysconfig.name} missing): the target's "
                "Python must be the one running jetwheel; make the rootfs with inv aarch64.setup"
            )
        self.arch, self.triplet, self.rootfs, self.py = arch, triplet, rootfs, py
        self.settings = settings  # the run's: the local runner's environment and compiler cache

    def target_env(self, workdir: Path) -> Path:
        """Write the file the plan's compile commands source; return its path."""
        confdir = workdir / ".cross"
        confdir.mkdir(exist_ok=True)
        shutil.copy2(self.sysconfig, confdir / self.sysconfig.name)
        inc = self.rootfs / "usr" / "include"
        env = {
            "CC": f"{self.triplet}-gcc",
            "CXX": f"{self.triplet}-g++",
            "_PYTHON_HOST_PLATFORM": f"linux-{self.arch}",
            "_PYTHON_SYSCONFIGDATA_NAME": self.sysconfig.stem,
            # only the target's sysconfig data module is added, never its standard library
            "PYTHONPATH": str(confdir),
            "CPPFLAGS": f"-I{inc / self.py} -idirafter {inc}",
        }
        path = confdir / "target.env"
        path.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
        return path

    def run(self, step: BuildStep, workdir: Path, index_url: str, log: StepLog) -> None:
        # the local runner's compiler cache: the cross compilers go through sccache (or ccache) by their names
        target = {"JW_TARGET_ENV": str(self.target_env(workdir))}
        LocalRunner(target, settings=self.settings, sccache=self.sccache).run(step, workdir, index_url, log)

    def probe_argv(self, image: str) -> list[str]:
        return ["bash", "-c"]

    def discard(self, step: BuildStep) -> None:
        """Nothing kept outside the work directory, which the engine removes."""
