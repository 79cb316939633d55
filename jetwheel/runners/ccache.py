"""Compiler caches that outlive a step: ccache for gcc, g++ and nvcc, in a directory on this host
(local and cross runners) or in a named volume on the engine (docker runner), so a remote engine
keeps its own cache where its builds run.

The cache is never part of a step's cache key and never changes what a compiler produces: ccache
returns the object file the same command produced before."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from jetwheel.errors import RunnerError
from jetwheel.settings import Settings

VOLUME_MOUNT = "/ccache"  # where the docker runner mounts the engine's named volume


def _default_dir() -> Path:
    return Path.home() / ".cache" / "jetwheel" / "ccache"


@dataclass(frozen=True)
class CompilerCache:
    """Where and how big: the run's settings JETWHEEL_CCACHE_DIR / _VOLUME / _SIZE (JETWHEEL_CCACHE=0
    turns it off)."""

    directory: Path = field(default_factory=_default_dir)
    volume: str = "jetwheel-ccache"
    max_size: str = "20G"
    enabled: bool = True

    @classmethod
    def of(cls, settings: Settings) -> CompilerCache:
        return cls(settings.ccache, settings.ccache_volume, settings.ccache_size, settings.ccache_enabled)

    def env(self, directory: str, workdir: str) -> dict[str, str]:
        """The variables a step's shell gets; the step script sets the compilers up from them."""
        if not self.enabled:
            return {}
        if not self.max_size[:1].isdigit():
            raise RunnerError(f"JETWHEEL_CCACHE_SIZE={self.max_size!r}: give a size such as 20G or 500M")
        return {
            "CCACHE_DIR": directory,
            "CCACHE_MAXSIZE": self.max_size,
            # paths under the work directory hash as relative ones, and the working directory is not
            # hashed: a rebuild in another work directory still hits
            "CCACHE_BASEDIR": workdir,
            "CCACHE_NOHASHDIR": "1",
        }


# Run at the top of every step script when CCACHE_DIR is set and the image has ccache: compilers
# found by name (setuptools, CMake, make) go through ccache's masquerade directory; CMake's CUDA
# language and torch's cpp_extension call nvcc by path, so they get ccache as a launcher.
SHELL_SETUP = r"""if [ -n "${CCACHE_DIR:-}" ] && command -v ccache >/dev/null; then
  jw_ccache_bin="$JW_WORK/.ccache-bin"; mkdir -p "$jw_ccache_bin" "$CCACHE_DIR"
  ccache --max-size "${CCACHE_MAXSIZE:-20G}" >/dev/null  # kept in the cache's own ccache.conf
  for c in gcc g++ cc c++ x86_64-linux-gnu-gcc x86_64-linux-gnu-g++ aarch64-linux-gnu-gcc aarch64-linux-gnu-g++; do
    if command -v "$c" >/dev/null; then ln -sf "$(command -v ccache)" "$jw_ccache_bin/$c"; fi
  done
  jw_nvcc="$(command -v nvcc || echo "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc")"
  if [ -x "$jw_nvcc" ]; then export PYTORCH_NVCC="ccache $jw_nvcc" CMAKE_CUDA_COMPILER_LAUNCHER=ccache; fi
  export PATH="$jw_ccache_bin:$PATH"
fi
"""


def run_ccache(argv: list[str], cache: CompilerCache, args: str, environ: Mapping[str, str]) -> str:
    """`ccache ARGS` where a runner builds (`argv`: the runner's probe_argv, a `bash -c` prefix), on
    that runner's cache: the directory here, or the engine's volume. `environ`: what the command
    starts from (the run's settings.environ)."""
    if not cache.enabled:
        raise RunnerError("the compiler cache is off (JETWHEEL_CCACHE=0)")
    env = dict(environ, **cache.env(str(cache.directory), "/"))
    cache.directory.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [*argv, f"command -v ccache >/dev/null || exit 127; ccache {args}"], capture_output=True, text=True, env=env
    )
    if done.returncode == 127:
        raise RunnerError("ccache is not installed where the runner builds (apt-get install ccache)")
    if done.returncode != 0:
        raise RunnerError(f"ccache {args} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return done.stdout.rstrip()
