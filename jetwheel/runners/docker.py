"""Run a step in a container through any docker-CLI engine (docker or podman), local or remote.

The work directory is copied in and the wheel copied out (`cp`), never bind-mounted, so the same
code works when the engine is another machine (DOCKER_HOST=ssh://jetson2, docker contexts,
`podman --connection`): that is how several Jetsons build a plan's independent steps.

A step's container is named by its cache key and kept when the step fails: run again, the step
starts the same container, whose work directory still holds the finished commands' results and
the build directory (see step_script). The compiler cache is a named volume on the engine.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from jetwheel.errors import BuildError, EngineLost, OutOfMemory, RunnerError
from jetwheel.model.step import BuildStep
from jetwheel.runners.base import ENV_FILE, StepLog, env_file, failed, step_script, stream
from jetwheel.runners.ccache import VOLUME_MOUNT, CompilerCache
from jetwheel.runners.sccache import VOLUME_MOUNT as SCCACHE_MOUNT
from jetwheel.runners.sccache import Sccache
from jetwheel.settings import Settings

WORK = "/jw"
KILLED = (137, 143)  # the container's main process got SIGKILL / SIGTERM from outside


def find_engine(preferred: str = "") -> str:
    for cand in [preferred] if preferred else ["podman", "docker"]:
        if shutil.which(cand):
            return cand
    raise RunnerError(
        f"no container engine found ({preferred or 'podman or docker'}); install one or use --runner local"
    )


class DockerRunner:
    name = "docker"

    def __init__(  # params: one per way a container engine is reached and a build container made
        self,
        engine: str = "",
        connection: str = "",
        gpu: bool = False,
        arch: str = "",
        ca_bundle: str = "",
        ccache: CompilerCache | None = None,
        memory: str = "",
        settings: Settings | None = None,  # the run's: its engine, CA bundle and compiler cache by default
        sccache: Sccache | None = None,
    ) -> None:
        self.sccache = sccache  # None: ccache alone
        self.engine = find_engine(engine or (settings.engine if settings else ""))
        self.connection = connection
        self.gpu = gpu
        self.arch = arch
        self.ccache = ccache or (CompilerCache.of(settings) if settings else CompilerCache())
        self.memory = memory  # a limit for the build container (e.g. 12g), swap included
        # A LAN behind a TLS-inspecting proxy: the container must trust the same CA as the host
        # for pip's upstream fallback to work
        self.ca_bundle = ca_bundle or (settings.ca_bundle if settings else "")

    def base(self) -> list[str]:
        cmd = [self.engine]
        podman = "podman" in self.engine
        if "://" in self.connection:  # an engine URL: unix:///run/podman.sock, ssh://builder@jetson2
            cmd += ["--remote", "--url", self.connection] if podman else ["--host", self.connection]
        elif self.connection:  # a named connection / context
            cmd += ["--connection", self.connection] if podman else ["--context", self.connection]
        return cmd

    def container_args(self) -> list[str]:
        """What every container of this runner gets: architecture, GPU, memory limit, compiler cache."""
        args = []
        if self.arch:
            args += ["--arch", self.arch] if "podman" in self.engine else ["--platform", f"linux/{self.arch}"]
        if self.gpu:
            args += self.gpu_args()
        if self.memory:
            args += ["--memory", self.memory, "--memory-swap", self.memory]
        if self.ccache.enabled:
            # a named volume, not a bind mount: it lives on the engine's machine, remote or not
            args += ["--volume", f"{self.ccache.volume}:{VOLUME_MOUNT}"]
            args += [f"--env={k}={v}" for k, v in sorted(self.ccache.env(VOLUME_MOUNT, WORK).items())]
        if self.sccache:
            # the engine's own volume too: sccache (installed there once if the image lacks it) and its cache
            args += ["--volume", f"{self.sccache.volume}:{SCCACHE_MOUNT}"]
            args += [f"--env={k}={v}" for k, v in sorted(self.sccache.env(SCCACHE_MOUNT, WORK).items())]
        return args

    def create_args(self, step: BuildStep, index_url: str, name: str) -> list[str]:
        """The `create` command line (shown by --dry-run too)."""
        # root inside the container: `cp` hands the copied work directory to root (the builder
        # image's own user is for interactive use)
        args = [*self.base(), "create", "--name", name, "--network=host", "--user", "root", "--workdir", WORK]
        args += self.container_args()
        env = dict(step.env, JW_WORK=WORK, JW_SRC=f"{WORK}/src", JW_INDEX=index_url, PIP_INDEX_URL=index_url)
        if self.ca_bundle:
            env.update(PIP_CERT=f"{WORK}/ca.crt", SSL_CERT_FILE=f"{WORK}/ca.crt")
        for k, v in sorted(env.items()):
            args += ["--env", f"{k}={v}"]
        return [*args, step.image, "bash", "-c", step_script(step)]

    def gpu_args(self) -> list[str]:
        # JetPack's container runtime exposes the iGPU and mounts CUDA from the host (csv mode)
        return ["--runtime", "nvidia"] if "docker" in self.engine else ["--device", "nvidia.com/gpu=all"]

    def _quiet(self, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.base(), *args], capture_output=True, text=True, timeout=timeout)

    def alive(self, timeout: float = 15) -> bool:
        """The engine answers (its daemon or service is up and reachable)."""
        try:
            return self._quiet("version", timeout=timeout).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def probe_argv(self, image: str) -> list[str]:
        return [
            *self.base(),
            "run",
            "--rm",
            "--network=host",
            "--user",
            "root",
            *self.container_args(),
            image,
            "bash",
            "-c",
        ]

    @staticmethod
    def container_name(step: BuildStep) -> str:
        return f"jetwheel-{step.name}-{step.cache_key[:12]}"

    def _kept(self, step: BuildStep) -> list[str]:
        """Containers kept from failed runs of this step, any cache key."""
        done = self._quiet("ps", "--all", "--format", "{{.Names}}", "--filter", f"name=^jetwheel-{step.name}-")
        return [n for n in done.stdout.split() if re.fullmatch(rf"jetwheel-{re.escape(step.name)}-[0-9a-f]{{12}}", n)]

    def run(self, step: BuildStep, workdir: Path, index_url: str, log: StepLog) -> None:
        try:
            self._run(step, workdir, index_url, log)
        except EngineLost:
            raise
        except (BuildError, RunnerError) as e:
            # a build that fails on its own leaves the engine answering; one that does not answer
            # any more lost only this attempt
            if self.alive():
                raise
            raise EngineLost(
                f"{step.name}: engine {self.connection or self.engine} stopped answering ({e}); nothing was published",
                gone=True,
            ) from None

    def _create(self, step: BuildStep, workdir: Path, index_url: str, name: str) -> None:
        made = subprocess.run(self.create_args(step, index_url, name), capture_output=True, text=True)
        if made.returncode != 0:
            raise RunnerError(
                f"{self.engine} could not create a container from {step.image}: "
                f"{(made.stderr.strip().splitlines() or ['?'])[-1]}"
            )
        if self.ca_bundle:
            shutil.copyfile(self.ca_bundle, workdir / "ca.crt")
        if self.sccache:
            self.sccache.write_files(workdir, WORK)
        copied = self._quiet("cp", f"{workdir}/.", f"{name}:{WORK}")
        if copied.returncode != 0:
            raise RunnerError(f"{self.engine} cp into the container failed: {copied.stderr.strip()}")

    def _run(self, step: BuildStep, workdir: Path, index_url: str, log: StepLog) -> None:
        name = self.container_name(step)
        kept = self._kept(step)
        for stale in (n for n in kept if n != name):  # one kept container per step: bounded by disk
            self._quiet("rm", "--force", stale)
        # this attempt's variables: a retry after an OOM kill halves MAX_JOBS in a kept container
        (workdir / ENV_FILE).write_text(env_file(dict(step.env)))
        if name in kept:
            copied = self._quiet("cp", str(workdir / ENV_FILE), f"{name}:{WORK}/{ENV_FILE}")
            if copied.returncode != 0:
                raise RunnerError(f"{self.engine} cp into the kept container failed: {copied.stderr.strip()}")
        else:
            self._create(step, workdir, index_url, name)
        try:
            code = stream([*self.base(), "start", "--attach", name], log)
        except BaseException:
            self._quiet("stop", "--time", "2", name)  # kept, stopped: a rerun continues in it
            raise
        if code != 0:
            oom = self._quiet("inspect", "--format", "{{.State.OOMKilled}}", name).stdout.strip() == "true"
            error = failed(step, code, log, oom, f"container limit {self.memory}" if self.memory else "")
            # the script itself killed, with no process inside reported killed: stopped from outside
            if code in KILLED and not isinstance(error, OutOfMemory):
                raise EngineLost(f"{step.name}: its container was killed (exit {code}); nothing was published", False)
            raise error
        (workdir / "out").mkdir(exist_ok=True)
        back = self._quiet("cp", f"{name}:{WORK}/out/.", str(workdir / "out"))
        if back.returncode != 0:
            raise RunnerError(f"{self.engine} cp out of the container failed: {back.stderr.strip()}")

    def discard(self, step: BuildStep) -> None:
        self._quiet("rm", "--force", self.container_name(step))
