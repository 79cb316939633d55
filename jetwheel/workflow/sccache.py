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
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path

from jetwheel.build.check import Check
from jetwheel.errors import JetwheelError, RunnerError, UsageError
from jetwheel.exhaustive import assert_never
from jetwheel.model.recipe import load_profile
from jetwheel.model.runnerkind import RunnerKind
from jetwheel.runners import make_runner
from jetwheel.runners.sccache import VOLUME_MOUNT, Counts, DistClient, Sccache, SharedCache, counts_of, read_counts
from jetwheel.workflow.context import context

OFF = ("0", "false", "no", "off")


def scheduler_url(dist: str) -> str:
    """`--dist HOST[:PORT]` or a URL, as sccache's client config names it."""
    if "://" in dist:
        return dist
    return f"http://{dist}" if ":" in dist else f"http://{dist}:10600"


def resolve(dist: str, env: Mapping[str, str]) -> Sccache | None:
    """The runners' sccache settings from the run's environment (the context's); None when the
    compiler cache is ccache (or off)."""
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
    settings = context().settings
    cache = resolve("", settings.environ)
    if cache is None:
        raise UsageError("the compiler cache is ccache here (JETWHEEL_COMPILER_CACHE=ccache): inv cache.stats --ccache")
    match runner:
        case "local" | "cross":
            return cache, read_counts(cache.directory / "stats")
        case "docker":
            argv = make_runner(runner, settings, engine, connection, sccache=cache).probe_argv(
                load_profile(profile).image
            )
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


def redis_answer(endpoint: str, user: str, password: str, timeout: float = 5) -> str:
    """What the shared cache answers this credential's AUTH and PING with ("+OK +PONG" when it may read)."""
    hostport = endpoint.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "6379")
    args = [b"AUTH", user.encode(), password.encode()]
    request = b"*3\r\n" + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args) + b"*1\r\n$4\r\nPING\r\n"
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as conn:
            conn.sendall(request)
            answer = b""
            while answer.count(b"\r\n") < 2:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                answer += chunk
    except (OSError, ValueError) as e:
        return f"unreachable ({e})"
    return " ".join(answer.decode(errors="replace").split("\r\n")).strip()


def checks(cache: Sccache | None, scratch: Path) -> list[Check]:
    """Preflight's lines for the compiler cache: which one; the shared cache answers this builder's
    credential; the scheduler has build servers."""
    found = [Check("compiler cache", True, describe(cache))]
    if cache is not None and cache.shared:
        s = cache.shared
        answer = redis_answer(s.endpoint, s.username, s.password)
        fix = "start it with inv cache.serve and export the credential it printed (JETWHEEL_SCCACHE_REDIS_*)"
        ok = answer == "+OK +PONG"
        found.append(Check(f"shared cache {s.endpoint} as {s.username}", ok, answer, "" if ok else fix))
    if cache is not None and cache.dist:
        from jetwheel.workflow.dist import scheduler_status

        try:
            status = scheduler_status(cache.dist.scheduler_url, cache.dist.token, scratch)
            servers = status.get("num_servers", 0)
            detail = f"{servers} build servers, {status.get('num_cpus', 0)} cores"
            fix = "" if servers else "start build servers: inv dist.server (the scheduler printed their commands)"
            found.append(Check(f"scheduler {cache.dist.scheduler_url}", servers > 0, detail, fix))
        except JetwheelError as e:
            found.append(Check(f"scheduler {cache.dist.scheduler_url}", False, str(e), "inv dist.scheduler"))
    return found
