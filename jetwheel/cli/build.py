"""The build tasks: `build-wheel`, `demo`, and the compiler cache (`cache.stats`, `cache.clear`)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from invoke.collection import Collection
from invoke.context import Context
from invoke.tasks import task

from jetwheel.cli.dist import serve
from jetwheel.cli.edge import clean_errors, dumps
from jetwheel.exhaustive import assert_never
from jetwheel.model.runnerkind import parse_runner

if TYPE_CHECKING:
    from jetwheel.workflow.build import BuildRequest


@task(
    help={
        "name": "package to build (its build-time dependencies are built first)",
        "profile": "version set to build (default: the profile pinning NAME, triton-25.04 first)",
        "runner": "local (this host / already in a JetPack container), docker (docker or podman) or cross "
        "(default: local; for another machine's profile, cross where every recipe allows it, else docker)",
        "dry_run": "print the plan (steps, env, commands, wheel names, cache keys) and build nothing",
        "json": "with --dry-run: the plan as JSON",
        "force": "rebuild steps whose cache key is already published",
        "index": "index URL (default: index/config.toml's)",
        "publish_failing": "publish a wheel that failed verify, marked failing on the index (loudly)",
        "keep_work": "keep each step's work directory (source, env, raw wheel) to debug a build",
        "engine": "container engine for --runner docker (podman or docker)",
        "connection": "remote engine: podman connection or docker context",
        "arch": "container architecture for --runner docker (e.g. aarch64)",
        "gpu": "give the container the GPU (--runtime nvidia on a Jetson)",
        "memory_gb": "build host memory to derive MAX_JOBS from (default: this machine's)",
        "cores": "build host cores (default: this machine's)",
        "recipes": "directory of recipes and profiles (default: $JETWHEEL_RECIPES, ./recipes, the bundled ones)",
        "sources": "directory of source archives (inv sources.fetch), tried before the index and upstream "
        "(default: $JETWHEEL_SOURCES)",
        "preflight": "only check, in minutes, what would fail hours later (one line per check, with the fix)",
        "no_preflight": "skip the checks that run before a real build",
        "disk_gb": "free disk a step needs where it builds (preflight; default: its recipe's disk_gb)",
        "no_oom_retry": "a step killed for memory fails at once (default: retried once with half MAX_JOBS)",
        "container_memory": "memory limit for the build containers, e.g. 12g (--runner docker)",
        "engines": "build on several engines at once: podman connections, docker contexts or engine URLs, "
        "comma-separated, or a file listing them (engines = [...] in TOML, or one a line)",
        "dist": "send compile jobs to this sccache-dist scheduler (HOST[:PORT] or URL; token in "
        "JETWHEEL_SCCACHE_DIST_TOKEN); a job a server fails runs here",
    },
    # twenty options: only long flags (automatic short ones collide and give --no-preflight a "-")
    auto_shortflags=False,
)
@clean_errors
def build_wheel(
    c: Context,
    name: str,
    profile: str = "",
    runner: str = "",
    dry_run: bool = False,
    json: bool = False,
    force: bool = False,
    index: str = "",
    publish_failing: bool = False,
    engine: str = "",
    connection: str = "",
    arch: str = "",
    gpu: bool = False,
    memory_gb: float = 0.0,
    cores: int = 0,
    keep_work: bool = False,
    recipes: str = "",
    sources: str = "",
    preflight: bool = False,
    no_preflight: bool = False,
    disk_gb: float = 0.0,
    no_oom_retry: bool = False,
    container_memory: str = "",
    engines: str = "",
    dist: str = "",
) -> None:
    """Build NAME and its dependency chain, repair, verify and publish each wheel to the index.
    A step that failed or was interrupted resumes in its kept work directory when run again."""
    from jetwheel.workflow.build import BuildRequest

    req = BuildRequest(
        name,
        profile,
        runner=parse_runner(runner) if runner else None,
        index=index,
        engine=engine,
        connection=connection,
        arch=arch,
        gpu=gpu,
        memory_gb=memory_gb,
        cores=cores,
        recipes=recipes,
        sources=sources,
        preflight="only" if preflight else "skip" if no_preflight else "before",
        disk_gb=disk_gb,
        container_memory=container_memory,
        engines=engines,
        dist=dist,
        force=force,
        publish_failing=publish_failing,
        keep_work=keep_work,
        oom_retry=not no_oom_retry,
    )
    if dry_run:
        _print_plan(req, json)
    else:
        _build(req)


def _print_plan(req: BuildRequest, as_json: bool) -> None:
    from jetwheel.build.plan import render_plan
    from jetwheel.workflow.build import plan_build

    plan = plan_build(req).plan
    print(dumps(plan.to_json()) if as_json else render_plan(plan))


def _build(req: BuildRequest) -> None:
    """Say what the build says as it goes: warnings and preflight on stderr (every check's line on
    stdout with --preflight, or on failure), then each step's result on stdout."""
    from jetwheel.build.preflight import render
    from jetwheel.build.progress import make_listener
    from jetwheel.workflow.build import Built, Notice, PreflightFailed, PreflightPassed, build

    verbose = req.preflight == "only"
    try:
        for note in build(req, make_listener(sys.stderr)):
            match note:
                case Notice(text):
                    print(f"jetwheel: WARNING: {text}", file=sys.stderr)
                case PreflightPassed(checks) if verbose:
                    print(render(checks), flush=True)
                case PreflightPassed(checks, seconds):
                    print(f"preflight: {len(checks)} checks passed in {seconds:.0f}s", file=sys.stderr)
                case Built(results):
                    for r in results:
                        print(f"{r.status:>9}  {r.wheel}")
                case _:
                    assert_never(note)
    except PreflightFailed as e:
        print(render(e.checks), file=sys.stdout if verbose else sys.stderr, flush=True)
        raise


@task(help={"no_serve": "stop the index at the end instead of serving until Ctrl-C", "runner": "local or docker"})
@clean_errors
def demo(c: Context, no_serve: bool = False, runner: str = "local") -> None:
    """Start the index under index/, build the mini stack into it, install it from the index in a
    fresh venv, and print the pip install line."""
    from jetwheel.build.progress import make_listener
    from jetwheel.workflow.demo import run_demo

    for line in run_demo(make_listener(sys.stderr), serve_after=not no_serve, runner=parse_runner(runner)):
        print(line, flush=True)


_CACHE_HELP = {
    "runner": "local (the directory JETWHEEL_CCACHE_DIR, default ~/.cache/jetwheel/ccache) or docker "
    "(the engine's volume JETWHEEL_CCACHE_VOLUME, default jetwheel-ccache)",
    "engine": "podman or docker",
    "connection": "remote engine: podman connection or docker context",
    "profile": "profile whose image runs ccache (--runner docker)",
}


@task(help={**_CACHE_HELP, "ccache": "ccache's own statistics (where sccache cannot serve)"})
@clean_errors
def stats(
    c: Context,
    runner: str = "local",
    engine: str = "",
    connection: str = "",
    profile: str = "mini",
    ccache: bool = False,
) -> None:
    """Show sccache's hits, misses and remote compiles, summed over the builds where RUNNER builds
    (--ccache: ccache's statistics)."""
    kind = parse_runner(runner)
    if not ccache:
        from jetwheel.workflow.sccache import render
        from jetwheel.workflow.sccache import stats as sccache_stats

        print(render(*sccache_stats(kind, engine, connection, profile)))
        return
    from jetwheel.workflow.images import ccache as run_ccache

    print(run_ccache(kind, engine, connection, profile, "--show-stats --verbose"))


@task(help=_CACHE_HELP)
@clean_errors
def clear(c: Context, runner: str = "local", engine: str = "", connection: str = "", profile: str = "mini") -> None:
    """Empty the compiler cache (a step's work directory kept for resuming is not touched)."""
    from jetwheel.workflow.images import ccache

    ccache(parse_runner(runner), engine, connection, profile, "--clear")
    print("compiler cache cleared")


cache_ns = Collection("cache", stats, clear)
cache_ns.add_task(serve)  # the LAN's shared cache (cli/dist.py)
