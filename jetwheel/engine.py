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
import functools
import hashlib
import logging
import platform
import re
import shutil
import socket
import subprocess
import tarfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name, parse_wheel_filename

from .errors import BuildError, OutOfMemory, VerifyFailed
from .index.client import IndexClient
from .plan import BuildStep, Plan
from .recipe import Profile, Recipe
from .runners import Runner, StepLog
from .verify import verify_wheel
from .verify.report import Report

log = logging.getLogger("jetwheel.engine")
CACHE = Path.home() / ".cache" / "jetwheel"


@dataclass(frozen=True)
class Event:
    """Progress of a build, for whatever shows it (a live terminal view, plain log lines)."""

    # plan | start | resume | line | oom | bytes | cached | verified | published | failed
    kind: str
    step: str = ""
    index: int = 0
    total: int = 0
    message: str = ""
    done: int = 0  # for "bytes": transferred so far, of `size`, of the file named in message
    size: int = 0


@dataclass
class StepResult:
    step: BuildStep
    status: str  # cached | published | built (not published: --no-publish)
    wheel: str
    report: Report | None = None
    seconds: float = 0.0


@dataclass
class Options:
    force: bool = False
    publish_failing: bool = False  # publish a wheel that failed verify, marked failing
    work_root: Path = field(default_factory=lambda: CACHE / "work")
    log_root: Path = field(default_factory=lambda: CACHE / "logs")
    keep_work: bool = False
    oom_retry: bool = True  # a step killed for memory runs once more with half MAX_JOBS


Listener = Callable[[Event], None]


def fetch_source(step: BuildStep, dest: Path, cache: Path = CACHE / "sources") -> None:
    """Put the step's source tree at dest (a fresh directory the build may modify)."""
    src = step.source
    if src["kind"] == "path":
        shutil.copytree(
            src["path"], dest, ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", "*.so")
        )
        return
    if src["kind"] == "git":
        cmd = ["git", "clone", "--depth", "1", "--branch", src["ref"]]
        if src.get("submodules"):
            cmd += ["--recurse-submodules", "--shallow-submodules"]
        done = subprocess.run([*cmd, src["url"], str(dest)], capture_output=True, text=True)
        if done.returncode != 0:
            raise BuildError(
                f"{step.name}: git clone of {src['url']} at {src['ref']} failed: "
                f"{(done.stderr.strip().splitlines() or ['?'])[-1]}"
            )
        return
    archive = download_archive(step, cache)
    with tarfile.open(archive) as tf:
        top = {m.name.split("/")[0] for m in tf.getmembers()}
        tf.extractall(dest.parent / ".extract", filter="data")
    extracted = dest.parent / ".extract"
    inner = extracted / next(iter(top)) if len(top) == 1 else extracted
    inner.rename(dest)
    shutil.rmtree(extracted, ignore_errors=True)


def download_archive(step: BuildStep, cache: Path = CACHE / "sources") -> Path:
    """The step's source archive in the cache, downloaded once and checked against the recipe's sha256."""
    src = step.source
    cache.mkdir(parents=True, exist_ok=True)
    archive: Path = cache / src["sha256"]
    if not archive.exists():
        tmp = cache / f".{src['sha256']}.part"
        try:
            with urllib.request.urlopen(src["url"], timeout=300) as r, open(tmp, "wb") as f:
                shutil.copyfileobj(r, f, 1 << 20)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise BuildError(f"{step.name}: download of {src['url']} failed: {e}") from None
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        if digest != src["sha256"]:
            tmp.unlink()
            raise BuildError(
                f"{step.name}: {src['url']} has sha256 {digest}, the recipe pins {src['sha256']}; "
                "the file changed upstream or the pin is wrong"
            )
        tmp.rename(archive)
    return archive


def provenance(step: BuildStep, recipe: Recipe, profile: Profile, runner: Runner) -> dict[str, Any]:
    return {
        "recipe": recipe.name,
        "recipe_digest": recipe.digest,
        "cache_key": step.cache_key,
        "source": dict(step.source),
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
    name, version, _b, _t = parse_wheel_filename(wheels[0].name)
    if name != canonicalize_name(step.name) or str(version) != step.version:
        raise BuildError(
            f"{step.name}: built {wheels[0].name}, but the plan expects {step.wheel} "
            "(does the recipe's env set the build version?)"
        )
    return wheels[0]


def _line_event(listener: Listener, step: str, index: int, total: int, line: str) -> None:
    listener(Event("line", step, index, total, line))


def _bytes_event(listener: Listener, step: str, index: int, total: int, what: str, done: int, size: int) -> None:
    listener(Event("bytes", step, index, total, what, done, size))


KEPT = ".jetwheel-kept"  # in a work directory left by a failed or interrupted run: resume in it


def work_dir(root: Path, step: BuildStep) -> Path:
    """The step's work directory: the same for every run of the same cache key, so a rerun resumes."""
    return root / f"{step.name}-{step.cache_key[:16]}"


def prepare_work(step: BuildStep, recipe: Recipe, work: Path) -> bool:
    """Make the work directory ready; True when it resumes one a failed run left (its source and
    finished commands intact). Kept directories of the step's other cache keys are removed: at most
    one kept directory per step bounds the disk this costs."""
    for stale in work.parent.glob(f"{step.name}-*"):
        if stale != work and re.fullmatch(rf"{re.escape(step.name)}-[0-9a-f]{{16}}", stale.name):
            shutil.rmtree(stale, ignore_errors=True)
    if (work / KEPT).exists():
        (work / KEPT).unlink()
        shutil.rmtree(work / "out", ignore_errors=True)
        return True
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    fetch_source(step, work / "src")
    (work / "patches").mkdir()
    for p in recipe.patches:
        shutil.copy2(p, work / "patches" / p.name)
    return False


def run_step(
    runner: Runner, step: BuildStep, work: Path, index_url: str, log: StepLog, options: Options, say: Listener
) -> None:
    """Run the step; if the kernel killed it for memory, say so and run it once more with half the
    jobs, in the same work directory (it continues where it was killed)."""
    try:
        runner.run(step, work, index_url, log)
    except OutOfMemory as e:
        if not options.oom_retry or e.jobs <= 1:
            raise
        half = str(e.jobs // 2)
        say(Event("oom", step.name, message=f"{e}; retrying once with MAX_JOBS={half}"))
        runner.run(
            replace(step, env={**step.env, "MAX_JOBS": half, "CMAKE_BUILD_PARALLEL_LEVEL": half}), work, index_url, log
        )


def run_plan(
    plan: Plan,
    recipes: dict[str, Recipe],
    profile: Profile,
    runner: Runner,
    client: IndexClient,
    options: Options,
    listener: Listener = lambda e: None,
) -> list[StepResult]:
    """Run every step in order; raise BuildError/VerifyFailed at the first failure (later steps
    depend on it). Each published wheel is on the index before the next step installs it."""
    results: list[StepResult] = []
    total = len(plan.steps)
    listener(Event("plan", total=total, message=f"{plan.target} for {plan.profile}"))
    target = profile.target()
    for i, step in enumerate(plan.steps, 1):
        recipe = recipes[canonicalize_name(step.name)]
        if not options.force:
            cached = client.cached(step.cache_key)
            if cached:
                listener(Event("cached", step.name, i, total, cached))
                results.append(StepResult(step, "cached", cached))
                continue
        listener(Event("start", step.name, i, total, step.wheel))
        started = time.monotonic()
        work = work_dir(options.work_root, step)
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        steplog = StepLog(
            options.log_root / f"{step.name}-{stamp}-{step.cache_key[:8]}.log",
            functools.partial(_line_event, listener, step.name, i, total),
        )
        client.on_bytes = functools.partial(_bytes_event, listener, step.name, i, total)
        resumable = False  # the work directory is worth keeping: the compile failed or was cut off
        try:
            if prepare_work(step, recipe, work):
                listener(Event("resume", step.name, i, total, f"continuing the interrupted build in {work}"))
            resumable = True
            run_step(runner, step, work, client.simple_url, steplog, options, _at(listener, i, total))
            resumable = False
            wheel = _built_wheel(step, work / "out")
            report = verify_wheel(wheel, target, recipe, client=client, cache=work / "deps")
            listener(
                Event(
                    "verified",
                    step.name,
                    i,
                    total,
                    "pass" if report.passed else "FAIL: " + ", ".join(report.failing_checks()),
                )
            )
            if not report.passed and not options.publish_failing:
                raise VerifyFailed(
                    f"{wheel.name} failed verify ({', '.join(report.failing_checks())}): "
                    f"{next(f.detail for f in report.findings if f.severity == 'error')}; not published"
                )
            client.upload(wheel, provenance=provenance(step, recipe, profile, runner), verify=report.to_json())
            listener(Event("published", step.name, i, total, wheel.name))
            results.append(StepResult(step, "published", wheel.name, report, time.monotonic() - started))
        except BaseException as e:
            listener(Event("failed", step.name, i, total, str(e) or type(e).__name__))
            if isinstance(e, KeyboardInterrupt):
                raise BuildError(
                    f"{step.name}: interrupted; nothing was published"
                    + (f" (a rerun resumes from {work})" if resumable else "")
                ) from None
            raise
        finally:
            client.on_bytes = None
            steplog.close()
            if resumable:
                (work / KEPT).touch()
            else:
                runner.discard(step)
                if not options.keep_work:
                    shutil.rmtree(work, ignore_errors=True)
    return results


def _at(listener: Listener, index: int, total: int) -> Listener:
    """The listener, with the step's place in the plan filled into each event."""
    return lambda e: listener(replace(e, index=index, total=total))
