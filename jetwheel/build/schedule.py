"""Run one plan on several engines at once (several Jetsons, each a podman connection, a docker
context or an engine URL).

Every step whose dependencies are on the index starts as soon as an engine that may take it is
free; the index is the only channel between steps (a step installs its dependencies from it, as on
one engine). Which engine may take a step, and with how many compile jobs, follows from the facts
probed from each engine first (runners/probe.py). An engine that goes away mid-step loses only that
attempt: the step goes back on the board and runs on another engine; nothing of the lost attempt
reaches the index, because a wheel is published only by the attempt that built and verified it.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import canonicalize_name

from jetwheel.build.engine import BuildRun, Event, StepResult, run_step
from jetwheel.build.plan import Plan
from jetwheel.errors import BuildError, EngineLost, JetwheelError, PlanError, RunnerError
from jetwheel.model.recipe import Recipe
from jetwheel.model.step import BuildStep
from jetwheel.runners import DockerRunner, LocalRunner, Runner
from jetwheel.runners.baseimage import image_fix
from jetwheel.runners.probe import EngineFacts, probe
from jetwheel.runners.sccache import Sccache
from jetwheel.settings import Settings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MAX_LOSSES = 3  # a step whose attempts keep dying is not a dying engine's fault any more


@dataclass(frozen=True)
class Engine:
    name: str
    runner: Runner
    facts: EngineFacts | None  # None: this host, for the plan's host steps (cibuildwheel)


def engine_names(spec: str) -> list[str]:
    """`a,b,c`, or a file: TOML with `engines = [...]`, or one name per line (# comments)."""
    path = Path(spec)
    if path.is_file():
        try:
            if path.suffix == ".toml":
                with open(path, "rb") as f:
                    names = tomllib.load(f).get("engines", [])
                if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                    raise PlanError(f"{path}: engines must be a list of strings (connections, contexts or URLs)")
            else:
                names = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise PlanError(f"{path}: not a list of engines ({e})") from None
    else:
        names = spec.split(",")
    names = [n.strip() for n in names if n.strip()]
    if not names:
        raise PlanError(f"no engines in {spec!r}")
    if len(set(names)) != len(names):
        raise PlanError(f"an engine is listed twice in {spec!r}")
    return names


def connect(  # params: build-wheel's container flags, each its own, and the run's settings
    names: Iterable[str],
    plan: Plan,
    engine: str = "",
    gpu: bool = False,
    emulate: str = "",
    memory: str = "",
    sccache: Sccache | None = None,
    *,
    settings: Settings,
) -> tuple[list[Engine], list[str]]:
    """Probe every engine at once. Returns the engines that answered (plus this host when the plan
    has host steps) and one line for each that did not. `emulate`: the architecture an engine of
    another one may build for under emulation (none by default); `memory`: each build container's
    limit; `settings`: the run's (engine, CA bundle, compiler cache, a host step's environment)."""
    images = {s.image for s in plan.steps if s.runner == "docker"}
    plain = [DockerRunner(engine=engine, connection=n, gpu=gpu, settings=settings) for n in names]
    with ThreadPoolExecutor(max_workers=len(plain) or 1) as pool:
        futures = [pool.submit(probe, r, images, gpu) for r in plain]
    engines: list[Engine] = []
    down: list[str] = []
    for runner, fut in zip(plain, futures, strict=True):
        try:
            facts = fut.result()
        except JetwheelError as e:
            down.append(str(e))
            continue
        arch = emulate if emulate and facts.arch != emulate else ""
        docker = DockerRunner(engine, runner.connection, gpu, arch, memory=memory, settings=settings, sccache=sccache)
        engines.append(Engine(facts.name, docker, facts))
    if not engines:
        raise RunnerError("no engine answered: " + "; ".join(down))
    if any(s.runner == "local" for s in plan.steps):
        engines.append(Engine("host", LocalRunner(settings=settings, sccache=sccache), None))
    return engines, down


def refusal(engine: Engine, step: BuildStep, target_arch: str, gpu: bool, emulate: str = "") -> str:
    """Why `engine` may not take `step`; "" when it may."""
    if (step.runner == "local") != (engine.facts is None):
        return "this host takes host steps only" if engine.facts is None else "a host step (starts its own container)"
    facts = engine.facts
    if facts is None:
        return ""
    if facts.arch != target_arch and emulate != target_arch:
        return f"{facts.arch} engine, {target_arch} target (pass --arch {target_arch} to emulate)"
    if step.image not in facts.images:
        return f"lacks image {step.image} ({image_fix(step.image)})"
    if gpu and not facts.gpu:
        return "no GPU"
    return ""


def sized(step: BuildStep, recipe: Recipe, engine: Engine) -> BuildStep:
    """The step with MAX_JOBS for the engine that runs it (not part of the cache key)."""
    if engine.facts is None:
        return step
    jobs = str(engine.facts.machine.max_jobs(recipe.job_memory_gb))
    return dataclasses.replace(step, env={**step.env, "MAX_JOBS": jobs, "CMAKE_BUILD_PARALLEL_LEVEL": jobs})


def critical_path(plan: Plan, seconds: dict[str, float]) -> float:
    """The longest chain of step times through the plan's DAG: no number of engines beats it."""
    finish: dict[str, float] = {}
    for s in plan.steps:  # dependencies first
        finish[canonicalize_name(s.name)] = seconds.get(s.name, 0.0) + max(
            (finish[d] for d in s.waits_for), default=0.0
        )
    return max(finish.values(), default=0.0)


class _Board:
    """The shared state of a fleet run; every field is read and written under `cond`."""

    def __init__(self, plan: Plan, allowed: dict[str, set[str]]) -> None:
        self.cond = threading.Condition()
        self.pending = list(plan.steps)  # in plan order: the step most others wait on first
        self.order = {s.name: i for i, s in enumerate(plan.steps, 1)}
        self.allowed = allowed  # step -> engines that may take it
        self.live: set[str] = set().union(*allowed.values()) if allowed else set()
        self.done: set[str] = set()
        self.results: dict[str, StepResult] = {}
        self.losses: dict[str, int] = {}
        self.avoid: dict[str, set[str]] = {}  # engines on which a step's attempt died
        self.error: BaseException | None = None

    def take(self, engine: str) -> BuildStep | None:
        """The next step for `engine`, waiting until one is ready; None when there is none left."""
        with self.cond:
            while True:
                if self.error is not None or not self.pending or engine not in self.live:
                    return None
                for s in self.pending:
                    if engine not in self.allowed[s.name] or not s.waits_for <= self.done:
                        continue
                    # a step that died on this engine goes elsewhere if any other live engine may take it
                    if engine in self.avoid.get(s.name, set()) and (self.allowed[s.name] & self.live) - {engine}:
                        continue
                    self.pending.remove(s)
                    return s
                self.cond.wait()

    def finish(self, step: BuildStep, result: StepResult) -> None:
        with self.cond:
            self.done.add(canonicalize_name(step.name))
            self.results[step.name] = result
            self.cond.notify_all()

    def fail(self, error: BaseException) -> None:
        with self.cond:
            if self.error is None:
                self.error = error
            self.cond.notify_all()

    def lost(self, step: BuildStep, engine: str, error: EngineLost) -> None:
        with self.cond:
            self.losses[step.name] = self.losses.get(step.name, 0) + 1
            self.avoid.setdefault(step.name, set()).add(engine)
            if error.gone:
                self.live.discard(engine)
            if self.losses[step.name] >= MAX_LOSSES:
                self.error = BuildError(f"{step.name}: {MAX_LOSSES} attempts lost; the last: {error}")
            else:
                self.pending.append(step)
                self.pending.sort(key=lambda s: self.order[s.name])
            stranded = [s.name for s in self.pending if not self.allowed[s.name] & self.live]
            if stranded and self.error is None:
                self.error = BuildError(f"no engine left that may take {', '.join(stranded)} (the last loss: {error})")
            self.cond.notify_all()


def run_fleet(run: BuildRun, engines: list[Engine], gpu: bool = False, emulate: str = "") -> list[StepResult]:
    """Run the plan's DAG on the engines; results in plan order. Raises the first step failure
    (after the steps already running have ended), or PlanError before anything runs when some step
    has no engine that may take it."""
    plan = run.plan
    board = _Board(plan, _allowed(plan, engines, run.profile.arch, gpu, emulate))
    fleet = _Fleet(run, board, len(plan.steps))
    run.listener(
        Event("plan", total=fleet.total, message=f"{plan.target} for {plan.profile} on {len(engines)} engines")
    )
    for e in engines:
        fleet.report(e.name, Event("engine", message=e.facts.describe() if e.facts else "this host"))
    threads = [threading.Thread(target=fleet.work, args=(e,), name=f"engine {e.name}", daemon=True) for e in engines]
    for t in threads:
        t.start()
    _wait(threads, board)
    if board.error is not None:
        raise board.error
    return [board.results[s.name] for s in plan.steps]


def _allowed(plan: Plan, engines: list[Engine], target_arch: str, gpu: bool, emulate: str) -> dict[str, set[str]]:
    """Step -> the engines that may take it; PlanError naming each engine's refusal when none may."""
    out: dict[str, set[str]] = {}
    for s in plan.steps:
        out[s.name] = {e.name for e in engines if not refusal(e, s, target_arch, gpu, emulate)}
        if not out[s.name]:
            why = "; ".join(f"{e.name}: {refusal(e, s, target_arch, gpu, emulate)}" for e in engines)
            raise PlanError(f"no engine may build {s.name} ({why})")
    return out


@dataclass(frozen=True)
class _Fleet:
    """What every engine's thread shares: the run, the board, and the listener behind one lock."""

    run: BuildRun
    board: _Board
    total: int
    lock: threading.Lock = field(default_factory=threading.Lock)  # one listener call at a time

    def report(self, engine: str, e: Event) -> None:
        with self.lock:
            self.run.listener(dataclasses.replace(e, engine=engine))

    def work(self, engine: Engine) -> None:
        """Take the board's steps for `engine` until none is left; each step's end goes on the board."""
        board = self.board
        while (step := board.take(engine.name)) is not None:
            recipe, index = self.run.recipes[canonicalize_name(step.name)], board.order[step.name]
            say = functools.partial(self.report, engine.name)
            try:
                result = run_step(self.run.telling(say), sized(step, recipe, engine), engine.runner)
            except EngineLost as e:
                say(Event("lost", step.name, index, self.total, str(e)))
                board.lost(step, engine.name, e)
            except BaseException as e:  # raised in the caller's thread
                board.fail(e)
            else:
                board.finish(step, result)


def _wait(threads: list[threading.Thread], board: _Board) -> None:
    """Wait for the engines' threads; on Ctrl-C stop the board, give the running steps a while to
    end, and raise."""
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.5)
    except KeyboardInterrupt:
        board.fail(BuildError("interrupted; only the steps already published are on the index"))
        # Ctrl-C reached the engines' processes too: let each step's cleanup mark its work kept
        # (a rerun resumes it) before the process exits
        deadline = time.monotonic() + 30
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        raise
