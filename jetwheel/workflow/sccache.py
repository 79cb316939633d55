"""The compiler cache's settings, resolved once from the environment (and a build's --dist) into the
frozen value the runners take; `inv cache.stats`'s sccache counters.

JETWHEEL_COMPILER_CACHE: sccache (the default) or ccache (sccache stays out). JETWHEEL_SCCACHE_DIR
(default ~/.cache/jetwheel/sccache), _VOLUME (the docker runner's, default jetwheel-sccache), _SIZE
(default 20G). The LAN's shared cache: JETWHEEL_SCCACHE_REDIS (redis://host:6379), with
JETWHEEL_SCCACHE_REDIS_USER / _PASSWORD (the credential `inv cache.serve` printed: the writer's on a
builder, the reader's elsewhere) and JETWHEEL_SCCACHE_REDIS_WRITER=1 on a builder. Distributed
compiles: --dist URL (or JETWHEEL_SCCACHE_DIST) and JETWHEEL_SCCACHE_DIST_TOKEN."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from jetwheel.errors import RunnerError, UsageError
from jetwheel.exhaustive import assert_never
from jetwheel.model.recipe import load_profile
from jetwheel.model.runnerkind import RunnerKind
from jetwheel.runners import make_runner
from jetwheel.runners.sccache import VOLUME_MOUNT, Counts, DistClient, Sccache, SharedCache, counts_of, read_counts

OFF = ("0", "false", "no", "off")


def scheduler_url(dist: str) -> str:
    """`--dist HOST[:PORT]` or a URL, as sccache's client config names it."""
    if "://" in dist:
        return dist
    return f"http://{dist}" if ":" in dist else f"http://{dist}:10600"


def resolve(dist: str = "", environ: Mapping[str, str] | None = None) -> Sccache | None:
    """The runners' sccache settings; None when the compiler cache is ccache (or off)."""
    env = os.environ if environ is None else environ
    kind = env.get("JETWHEEL_COMPILER_CACHE", "sccache")
    if kind not in ("sccache", "ccache"):
        raise UsageError(f"JETWHEEL_COMPILER_CACHE={kind!r}: give sccache or ccache")
    if kind == "ccache" or env.get("JETWHEEL_CCACHE", "1") in OFF:
        if dist:
            raise UsageError("--dist needs sccache as the compiler cache (JETWHEEL_COMPILER_CACHE=sccache)")
        return None
    shared = None
    if redis := env.get("JETWHEEL_SCCACHE_REDIS", ""):
        shared = SharedCache(
            redis,
            env.get("JETWHEEL_SCCACHE_REDIS_USER", "reader"),
            env.get("JETWHEEL_SCCACHE_REDIS_PASSWORD", ""),
            writer=env.get("JETWHEEL_SCCACHE_REDIS_WRITER", "0") not in OFF,
        )
    client = None
    if dist := dist or env.get("JETWHEEL_SCCACHE_DIST", ""):
        token = env.get("JETWHEEL_SCCACHE_DIST_TOKEN", "")
        if not token:
            raise UsageError("--dist: set JETWHEEL_SCCACHE_DIST_TOKEN to the token the scheduler was started with")
        client = DistClient(scheduler_url(dist), token)
    return Sccache(
        directory=Path(env.get("JETWHEEL_SCCACHE_DIR", Path.home() / ".cache" / "jetwheel" / "sccache")),
        volume=env.get("JETWHEEL_SCCACHE_VOLUME", "jetwheel-sccache"),
        max_size=env.get("JETWHEEL_SCCACHE_SIZE", "20G"),
        shared=shared,
        dist=client,
    )


def describe(cache: Sccache | None) -> str:
    """One line for the build's notes: which compiler cache, shared or not, distributed or not."""
    if cache is None:
        return "compiler cache: ccache"
    parts = [f"compiler cache: sccache ({cache.directory}, engines' volume {cache.volume})"]
    if cache.shared:
        role = "writes" if cache.shared.writer else "reads only"
        parts.append(f"shared cache {cache.shared.endpoint} as {cache.shared.username} ({role})")
    if cache.dist:
        parts.append(f"compiles distributed by {cache.dist.scheduler_url}")
    return "; ".join(parts)


def stats(runner: RunnerKind, engine: str = "", connection: str = "", profile: str = "mini") -> tuple[Sccache, Counts]:
    """sccache's counters summed over the steps that ran where `runner` builds: this host's cache
    directory (local, cross), or the engine's volume (docker, read in the profile's image)."""
    cache = resolve("")
    if cache is None:
        raise UsageError("the compiler cache is ccache here (JETWHEEL_COMPILER_CACHE=ccache): inv cache.stats --ccache")
    match runner:
        case "local" | "cross":
            return cache, read_counts(cache.directory / "stats")
        case "docker":
            argv = make_runner(runner, engine, connection, sccache=cache).probe_argv(load_profile(profile).image)
            script = f'for f in {VOLUME_MOUNT}/stats/*.json; do [ -f "$f" ] && cat "$f" && echo; done; true'
            done = subprocess.run([*argv, script], capture_output=True, text=True)
            if done.returncode != 0:
                raise RunnerError(f"reading sccache's counters on the engine failed: {done.stderr.strip()[-200:]}")
            return cache, counts_of([json.loads(line) for line in done.stdout.splitlines() if line.strip()])
        case _:
            assert_never(runner)


def render(cache: Sccache, counts: Counts) -> str:
    lines = [
        describe(cache),
        f"steps counted       {counts.steps}",
        f"compile requests    {counts.requests}",
        f"cache hits          {counts.hits}",
        f"cache misses        {counts.misses}",
        f"remote compiles     {counts.remote_compiles}",
        f"remote failures     {counts.failed_remote} (compiled here instead)",
        f"cache write errors  {counts.write_errors} (a reader's refused writes)",
    ]
    return "\n".join(lines)
