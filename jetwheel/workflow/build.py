"""`build-wheel`: plan the build, choose where it runs (one runner, or a fleet of engines), check it
before it starts (preflight), run it. Each choice is made here, once, from a parsed request."""

from __future__ import annotations

import dataclasses
import platform
import tempfile
import time
from collections.abc import Iterator
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from jetwheel.build.engine import BuildRun, Listener, StepResult, run_steps
from jetwheel.build.plan import Plan, default_runner, make_plan
from jetwheel.build.preflight import Check, Needs, failures, preflight
from jetwheel.errors import CheckFailed
from jetwheel.exhaustive import assert_never
from jetwheel.machine import Machine, this_machine
from jetwheel.model.profile import Profile
from jetwheel.model.recipe import Recipe
from jetwheel.model.runnerkind import RunnerKind
from jetwheel.runners import Runner, make_runner
from jetwheel.workflow.context import Context, context
from jetwheel.workflow.profiles import profile_for
from jetwheel.workflow.sccache import checks as compiler_cache_checks
from jetwheel.workflow.sccache import resolve as resolve_sccache
from jetwheel.workflow.verify import image_target

if TYPE_CHECKING:
    from jetwheel.build.schedule import Engine

# --preflight: check, then stop; the default: check, then build; --no-preflight: build unchecked
PreflightMode = Literal["only", "before", "skip"]


@dataclass(frozen=True)
class BuildRequest:
    """What `build-wheel` was asked for, parsed; empty values mean "this machine's" or "the default"."""

    name: str
    profile: str = ""
    _: KW_ONLY
    runner: RunnerKind | None = None  # None: the one the profile's machine needs (plan.default_runner)
    index: str = ""
    engine: str = ""
    connection: str = ""
    arch: str = ""
    gpu: bool = False
    memory_gb: float = 0.0
    cores: int = 0
    recipes: str = ""
    sources: str = ""
    preflight: PreflightMode = "before"
    disk_gb: float = 0.0  # 0: each recipe's disk_gb
    container_memory: str = ""
    engines: str = ""  # several engines at once (schedule.engine_names)
    dist: str = ""  # an sccache-dist scheduler for the compile jobs (workflow/sccache.py)
    force: bool = False
    publish_failing: bool = False
    keep_work: bool = False
    oom_retry: bool = True


@dataclass(frozen=True)
class Planned:
    recipes: dict[str, Recipe]
    profile: Profile
    runner: RunnerKind
    plan: Plan
    ctx: Context  # the run's settings, recipes and index client, resolved once


@dataclass(frozen=True)
class Where:
    """Where the build runs: one runner, or a fleet of engines."""

    runner: Runner  # the one preflight checks: with a fleet, its first engine's
    fleet: tuple[Engine, ...] = ()
    down: tuple[str, ...] = ()  # one line per engine of the fleet that did not answer


@dataclass(frozen=True)
class Notice:
    text: str


@dataclass(frozen=True)
class PreflightPassed:
    checks: tuple[Check, ...]
    seconds: float


@dataclass(frozen=True)
class Built:
    results: tuple[StepResult, ...]


BuildNote = Notice | PreflightPassed | Built


class PreflightFailed(CheckFailed):
    """Some preflight check failed; `checks` holds every one, passed or not."""

    def __init__(self, checks: list[Check]) -> None:
        failed = failures(checks)
        super().__init__(
            f"preflight: {len(failed)} of {len(checks)} checks failed (first: {failed[0].check}); "
            "fix them or pass --no-preflight"
        )
        self.checks = checks


def choose_runner(req: BuildRequest, recipes: dict[str, Recipe], profile: Profile) -> RunnerKind:
    """A fleet builds in containers; else the runner asked for; else the profile's machine decides."""
    if req.engines:
        return "docker"
    if req.runner is not None:
        return req.runner
    return default_runner(recipes, profile, req.name, platform.machine())


def plan_build(req: BuildRequest) -> Planned:
    """The request's plan: its steps, for this machine (or --cores/--memory-gb's), on its runner."""
    ctx = context(req.recipes, req.profile, req.index)
    recipes = ctx.recipes
    profile = profile_for(req.name, req.profile, req.arch, ctx.root)
    here = this_machine()
    machine = Machine(req.cores or here.cores, req.memory_gb or here.memory_gb)
    runner = choose_runner(req, recipes, profile)
    return Planned(recipes, profile, runner, make_plan(recipes, profile, req.name, runner, machine), ctx)


def where_to_build(planned: Planned, req: BuildRequest) -> Where:
    """One runner; with --engines, every engine that answers (raises RunnerError when none does)."""
    if not req.engines:
        # a profile for another machine runs its containers emulated for that machine
        host = platform.machine()
        arch = req.arch or (planned.profile.arch if planned.profile.arch != host else "")
        settings = planned.ctx.settings
        cache = resolve_sccache(req.dist, settings.environ)
        memory = req.container_memory
        return Where(make_runner(planned.runner, settings, req.engine, req.connection, req.gpu, arch, memory, cache))
    from jetwheel.build.schedule import connect, engine_names

    names, cache = engine_names(req.engines), resolve_sccache(req.dist, planned.ctx.settings.environ)
    fleet, down = connect(
        names, planned.plan, req.engine, req.gpu, req.arch, req.container_memory, cache, settings=planned.ctx.settings
    )
    return Where(fleet[0].runner, tuple(fleet), tuple(down))


def check_build(planned: Planned, where: Where, req: BuildRequest) -> PreflightPassed:
    """Every preflight check of the plan where it will run; PreflightFailed (exit 1) if one fails."""
    started = time.monotonic()
    options = planned.ctx.options(req.sources)
    needs = Needs(disk_gb=req.disk_gb, work_root=options.work_root, sources=options.sources)
    facts = where.fleet[0].facts if where.fleet else None  # a fleet's engine was probed by connect: not asked again
    client = planned.ctx.client
    checks = preflight(planned.plan, planned.recipes, planned.profile, where.runner, client, needs, req.gpu, facts)
    with tempfile.TemporaryDirectory(prefix="jw-sccache-") as scratch:
        checks += compiler_cache_checks(resolve_sccache(req.dist, planned.ctx.settings.environ), Path(scratch))
    if failures(checks):
        raise PreflightFailed(checks)
    return PreflightPassed(tuple(checks), time.monotonic() - started)


def build(req: BuildRequest, listener: Listener) -> Iterator[BuildNote]:
    """Plan, place, check (unless skipped) and run the build; what the door should say, in order."""
    planned = plan_build(req)
    where = where_to_build(planned, req)
    for line in where.down:
        yield Notice(f"{line}; building without it")
    match req.preflight:
        case "only":
            yield check_build(planned, where, req)
            return
        case "before":
            yield check_build(planned, where, req)
        case "skip":
            pass
        case _:
            assert_never(req.preflight)
    if req.publish_failing:
        yield Notice("--publish-failing: wheels that fail verify will be published, marked failing")
    yield Built(tuple(run_build(planned, where, req, listener)))


def run_build(planned: Planned, where: Where, req: BuildRequest, listener: Listener) -> list[StepResult]:
    """The plan run on its runner, or on the fleet, with the run's one index client (the same the
    checks used) for everything the engine needs of an index."""
    options = dataclasses.replace(
        planned.ctx.options(req.sources),
        force=req.force,
        publish_failing=req.publish_failing,
        keep_work=req.keep_work,
        oom_retry=req.oom_retry,
    )
    run = BuildRun.on_index(planned.plan, planned.recipes, planned.profile, planned.ctx.client, options)
    prof = planned.profile  # an image that provides projects: verify binds against its files
    run = dataclasses.replace(run, target=image_target(prof.target(), prof, planned.ctx.settings.cache))
    if where.fleet:
        from jetwheel.build.schedule import run_fleet

        return run_fleet(run.telling(listener), list(where.fleet), req.gpu, req.arch)
    return run_steps(run.telling(listener), where.runner)
