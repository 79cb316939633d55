"""Execute a plan: for each step, skip it if the index already has its cache key, else fetch the
source, run the step (runner), check the repaired wheel, verify it against the wheels it will be
installed with, and publish it with its provenance and verify report.

A failed step publishes nothing: the wheel reaches the index only after verify passed (or the
caller explicitly asked to publish a failing wheel, which is then marked failing on the index).

A step's work directory is named by its cache key and kept when the build fails or is interrupted:
the next run of the same step resumes in it (see runners.step_script). A compile killed for memory
is retried once with half the jobs."""

from __future__ import annotations

import datetime
import json
import logging
import platform
import re
import shutil
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from packaging.tags import Tag
from packaging.utils import canonicalize_name, parse_wheel_filename

from jetwheel.build.plan import Plan
from jetwheel.build.ports import CachedBuilds, DependencyWheels, IndexPorts, Publisher, SourceFinder
from jetwheel.build.steplock import hold_step
from jetwheel.errors import BuildError, EngineLost, OutOfMemory, VerifyFailed
from jetwheel.index.client.client import IndexClient
from jetwheel.model.profile import Profile
from jetwheel.model.recipe import Recipe
from jetwheel.model.step import BuildStep
from jetwheel.runners import Runner, StepLog
from jetwheel.sources.fetch import FetchedSource, Lookup, fetch_source
from jetwheel.sources.subsources import fetch_sub
from jetwheel.target import Target
from jetwheel.verify import read_wheels, verify_wheel
from jetwheel.verify.factcache import FactCache
from jetwheel.verify.report import Report
from jetwheel.verify.wheel import Wheel

log = logging.getLogger("jetwheel.engine")


def _cache(sub: str) -> Path:
    """~/.cache/jetwheel/SUB, where the caller gives no directory (the workflow gives its settings')."""
    return Path.home() / ".cache" / "jetwheel" / sub


# What an Event says; every view handles each (progress.py matches them exhaustively).
EventKind = Literal[
    "plan",  # a plan starts: message names it, total counts its steps
    "engine",  # an engine says something about itself (schedule.py)
    "start",  # a step starts building
    "resume",  # ... in the work directory a failed or interrupted run left
    "line",  # a line of the build's output
    "oom",  # the build was killed for memory and runs once more with fewer jobs
    "bytes",  # a transfer's progress: done of size bytes of the file named in message
    "verified",  # the built wheel was verified: pass, or FAIL and the failing checks
    "cached",  # the step's end: its wheel was on the index already
    "published",  # ... its wheel is on the index now
    "failed",  # ... it failed; nothing of it was published
    "lost",  # an engine lost the step's attempt: it runs again elsewhere (schedule.py)
]
StepStatus = Literal["cached", "published"]


@dataclass(frozen=True)
class Event:
    """Progress of a build, for whatever shows it (a live terminal view, plain log lines)."""

    kind: EventKind
    step: str = ""
    index: int = 0
    total: int = 0
    message: str = ""
    done: int = 0  # for "bytes": transferred so far, of `size`, of the file named in message
    size: int = 0
    engine: str = ""  # the engine running the step, when a plan runs on several (schedule.py)


@dataclass
class StepResult:
    step: BuildStep
    status: StepStatus
    wheel: str
    report: Report | None = None
    seconds: float = 0.0


@dataclass
class Options:
    force: bool = False
    publish_failing: bool = False  # publish a wheel that failed verify, marked failing
    work_root: Path = field(default_factory=lambda: _cache("work"))
    log_root: Path = field(default_factory=lambda: _cache("logs"))
    keep_work: bool = False
    sources: Path | None = None  # local source archives, tried first (--sources, $JETWHEEL_SOURCES)
    oom_retry: bool = True  # a step killed for memory runs once more with half MAX_JOBS
    facts: Path | None = None  # the fact cache ($JETWHEEL_FACTS; None: ~/.cache/jetwheel/facts)


Listener = Callable[[Event], None]


def _quiet(e: Event) -> None:
    pass


@dataclass(frozen=True)
class BuildRun:
    """One plan's run, resolved once and shared by every step: the plan, its recipes and profile,
    what the engine needs of the index (small interfaces, build/ports.py), the options, who is
    told of progress, and what verify checks the wheels against (the profile's target; for a
    sysroot profile, with the image's libraries read from its files: workflow/verify.py)."""

    plan: Plan
    recipes: Mapping[str, Recipe]
    profile: Profile
    cache: CachedBuilds
    sources: SourceFinder
    wheels: DependencyWheels
    publish: Publisher
    options: Options
    listener: Listener = _quiet
    target: Target | None = None  # None: the profile's own

    @classmethod
    def on_index(
        cls, plan: Plan, recipes: Mapping[str, Recipe], profile: Profile, client: IndexClient, options: Options
    ) -> BuildRun:
        """A run whose four needs of the index are met by one client (and options.sources)."""
        ports = IndexPorts(client, options.sources)
        return cls(plan, recipes, profile, ports, ports, ports, ports, options)

    def telling(self, listener: Listener) -> BuildRun:
        return replace(self, listener=listener)

    def verify_target(self) -> Target:
        return self.target or self.profile.target()

    def position(self, step: BuildStep) -> int:
        """The step's place in the plan, from 1 (a step resized for an engine keeps its name)."""
        return next(i for i, s in enumerate(self.plan.steps, 1) if s.name == step.name)


def provenance(
    step: BuildStep, recipe: Recipe, profile: Profile, runner: Runner, source: FetchedSource
) -> dict[str, Any]:
    origin = {"sha256": source.sha256, "from": source.origin, **({"commit": source.commit} if source.commit else {})}
    spec = step.source.to_json()
    taken = dict(source.subs)
    if step.source.subs:  # each sub-source: name, repository, commit, sha256, and where it was taken from
        spec["subs"] = [{**sub, "from": taken.get(sub["name"], "")} for sub in spec["subs"]]
    return {
        "recipe": recipe.name,
        "recipe_digest": recipe.digest,
        "cache_key": step.cache_key,
        "source": {**spec, **origin},
        "image": step.image,
        "runner": runner.name,
        "profile": profile.name,
        "env": dict(step.env),
        "host": socket.gethostname(),
        "host_machine": platform.machine(),
        "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "manylinux": recipe.manylinux,
        "manylinux_reason": recipe.manylinux_reason,
    }


def _built_wheel(step: BuildStep, out: Path) -> Path:
    wheels = sorted(out.glob("*.whl"))
    if len(wheels) != 1:
        raise BuildError(f"{step.name}: expected one repaired wheel in the output, found {len(wheels)}")
    name, version, _b, tags = parse_wheel_filename(wheels[0].name)
    if name != canonicalize_name(step.name) or str(version) != step.version:
        raise BuildError(
            f"{step.name}: built {wheels[0].name}, but the plan expects {step.wheel} "
            "(does the recipe's env set the build version?)"
        )
    # the Python and ABI tags are the plan's promise (cp312, or cp38-abi3 for a limited-API build);
    # the platform tag is the repair's to choose
    built, planned = _python_abi(tags), _python_abi(parse_wheel_filename(step.wheel)[3])
    if built != planned:
        raise BuildError(
            f"{step.name}: built {wheels[0].name} ({built}), but the plan expects {step.wheel} ({planned}); "
            "a limited-API wheel needs its backend told (e.g. setuptools' bdist_wheel py_limited_api)"
        )
    return wheels[0]


def _python_abi(tags: frozenset[Tag]) -> str:
    return ".".join(sorted({f"{t.interpreter}-{t.abi}" for t in tags}))


@dataclass(frozen=True)
class _Place:
    """A step and its place in the plan: every event of the step names both."""

    step: BuildStep
    index: int
    total: int
    listener: Listener

    def say(self, kind: EventKind, message: str) -> None:
        self.listener(Event(kind, self.step.name, self.index, self.total, message))

    def line(self, line: str) -> None:
        self.say("line", line)

    def progress(self, what: str, done: int, size: int) -> None:
        self.listener(Event("bytes", self.step.name, self.index, self.total, what, done, size))


# in a work directory whose source is whole, from the moment it is: a run killed outright (the
# session's end, a power cut, SIGKILL) never reaches its cleanup, and its next run must still
# resume in what it compiled. Only a run that ends cleanly (published, or lost its engine) removes it.
KEPT = ".jetwheel-kept"


def work_dir(root: Path, step: BuildStep) -> Path:
    """The step's work directory: the same for every run of the same cache key, so a rerun resumes."""
    return root / f"{step.name}-{step.cache_key[:16]}"


def prepare_work(step: BuildStep, recipe: Recipe, work: Path, lookup: Lookup) -> tuple[bool, FetchedSource]:
    """Make the work directory ready; (True, ...) when it resumes one a failed or killed run left (its source
    and finished commands intact). Kept directories of the step's other cache keys are removed: at
    most one kept directory per step bounds the disk this costs. The source's origin is recorded in
    the directory so a resumed build publishes the same provenance."""
    for stale in work.parent.glob(f"{step.name}-*"):
        if stale != work and re.fullmatch(rf"{re.escape(step.name)}-[0-9a-f]{{16}}", stale.name):
            shutil.rmtree(stale, ignore_errors=True)
    record = work / "source.json"
    if (work / KEPT).exists() and record.is_file():
        kept = json.loads(record.read_text())
        return True, FetchedSource(work / "src", **{**kept, "subs": tuple(tuple(s) for s in kept.get("subs", ()))})
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    source = fetch_source(step.name, step.pin, step.source, work / "src", lookup)
    (work / "patches").mkdir()
    for p in recipe.patches:
        shutil.copy2(p, work / "patches" / p.name)
    subs = []
    for sub in step.source.subs:  # unpacked beside src/; the plan's commands export and patch them
        subs.append((sub.name, fetch_sub(sub, work / sub.workdir, lookup).origin))
        (work / "patches" / sub.name).mkdir()
        for sp in map(Path, sub.patches):
            shutil.copy2(sp, work / "patches" / sub.name / sp.name)
    source = replace(source, subs=tuple(subs))
    record.write_text(
        json.dumps({"sha256": source.sha256, "origin": source.origin, "commit": source.commit, "subs": subs})
    )
    (work / KEPT).touch()
    return False, source


def _run_retrying_oom(runner: Runner, at: _Place, work: Path, index_url: str, log: StepLog, options: Options) -> None:
    """Run the step; if the kernel killed it for memory, say so and run it once more with half the
    jobs, in the same work directory (it continues where it was killed)."""
    step = at.step
    try:
        runner.run(step, work, index_url, log)
    except OutOfMemory as e:
        if not options.oom_retry or e.jobs <= 1:
            raise
        half = str(e.jobs // 2)
        at.say("oom", f"{e}; retrying once with MAX_JOBS={half}")
        runner.run(
            replace(step, env={**step.env, "MAX_JOBS": half, "CMAKE_BUILD_PARALLEL_LEVEL": half}), work, index_url, log
        )


def run_plan(  # params: a plan's whole run in one call, as the tests and benches make it
    plan: Plan,
    recipes: dict[str, Recipe],
    profile: Profile,
    runner: Runner,
    client: IndexClient,
    options: Options,
    listener: Listener = _quiet,
) -> list[StepResult]:
    """Run every step in order on one runner, with one index client for all the engine needs of an
    index; see run_steps."""
    return run_steps(BuildRun.on_index(plan, recipes, profile, client, options).telling(listener), runner)


def run_steps(run: BuildRun, runner: Runner) -> list[StepResult]:
    """Run every step in order; raise BuildError/VerifyFailed at the first failure (later steps
    depend on it). Each published wheel is on the index before the next step installs it."""
    run.listener(Event("plan", total=len(run.plan.steps), message=f"{run.plan.target} for {run.plan.profile}"))
    return [run_step(run, step, runner) for step in run.plan.steps]


def run_step(run: BuildRun, step: BuildStep, runner: Runner) -> StepResult:
    """One step: skip it if its cache key is published, else build, verify and publish it. Raises
    (BuildError, VerifyFailed, RunnerError, ...) with nothing published. The step's transfers
    (source archives, verify's wheels, the upload) report their bytes to the run's listener."""
    options, recipe = run.options, run.recipes[canonicalize_name(step.name)]
    at = _Place(step, run.position(step), len(run.plan.steps), run.listener)
    if not options.force and (cached := run.cache.cached(step.cache_key)):
        at.say("cached", cached)
        return StepResult(step, "cached", cached)
    at.say("start", step.wheel)
    started = time.monotonic()
    work = work_dir(options.work_root, step)
    held = hold_step(options.work_root, step.name)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    steplog = StepLog(options.log_root / f"{step.name}-{stamp}-{step.cache_key[:8]}.log", at.line)
    resumable = False  # the work directory is worth keeping: the compile failed or was cut off
    try:
        source = _prepare(at, recipe, work, runner, run.sources.lookup(at.progress))
        resumable = True
        _run_retrying_oom(runner, at, work, run.publish.simple_url, steplog, options)
        resumable = False
        wheel = _built_wheel(step, work / "out")
        facts, report = _verify(at, wheel, run.verify_target(), recipe, run, work)
        run.publish.upload(
            wheel,
            provenance=provenance(step, recipe, run.profile, runner, source),
            verify=report.to_json(),
            facts=facts.to_bytes(),  # the next verify against this wheel reads none of its bytes
            progress=at.progress,
        )
        at.say("published", wheel.name)
        return StepResult(step, "published", wheel.name, report, time.monotonic() - started)
    except BaseException as e:
        # after a lost engine, what the attempt left lives on that engine: the step starts afresh elsewhere
        resumable = resumable and not isinstance(e, EngineLost)
        at.say("failed", str(e) or type(e).__name__)
        if isinstance(e, KeyboardInterrupt):
            raise BuildError(
                f"{step.name}: interrupted; nothing was published"
                + (f" (a rerun resumes from {work})" if resumable else "")
            ) from None
        raise
    finally:
        steplog.close()
        _leave(runner, step, work, resumable, options.keep_work)
        held.close()


def _prepare(at: _Place, recipe: Recipe, work: Path, runner: Runner, lookup: Lookup) -> FetchedSource:
    """The work directory ready to build in: resumed, or fresh (then nothing the runner kept from
    an earlier attempt may be resumed instead)."""
    resumed, source = prepare_work(at.step, recipe, work, lookup)
    if resumed:
        at.say("resume", f"continuing the interrupted build in {work}")
    else:
        runner.discard(at.step)
    return source


def _verify(at: _Place, wheel: Path, target: Target, recipe: Recipe, run: BuildRun, work: Path) -> tuple[Wheel, Report]:
    """The built wheel's facts and verify report; raises VerifyFailed when it fails, unless the
    caller asked to publish failing wheels."""
    cache = FactCache(run.options.facts)
    facts = read_wheels([wheel], cache)[0]
    report = verify_wheel(
        facts, target, recipe, source=run.wheels.wheels(at.progress), cache=cache, downloads=work / "deps"
    )
    at.say("verified", "pass" if report.passed else "FAIL: " + ", ".join(report.failing_checks()))
    if not report.passed and not run.options.publish_failing:
        raise VerifyFailed(
            f"{wheel.name} failed verify ({', '.join(report.failing_checks())}): {report.errors()[0].detail}; "
            "not published"
        )
    return facts, report


def _leave(runner: Runner, step: BuildStep, work: Path, resumable: bool, keep: bool) -> None:
    """Leave the work directory for the next run to resume in, or discard it (kept on request, but
    not resumed)."""
    if not resumable:
        (work / KEPT).unlink(missing_ok=True)
        runner.discard(step)
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
