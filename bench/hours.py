"""Builds that take hours, in miniature: one step (mini-cuda: nvcc + g++; or with --xgrammar the real
xgrammar 0.1.16, cp312 x86_64, CMake + ninja, from ../shared/sources) built cold, rerun after being
killed at about 70 % of its compile, and rebuilt from scratch with a warm compiler cache; then the
preflight of the triton-25.04 vLLM plan against a local index.

Targets: resumed <= 0.4x cold, warm-cache rebuild <= 0.25x cold, preflight < 120 s. Prints each
time, the share of it spent compiling, and the ratios against the cold build of the same run."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import free_port
from shared_sources import SHARED

from jetwheel.build.engine import Event, Options, run_plan
from jetwheel.build.plan import Plan, make_plan
from jetwheel.build.preflight import Needs, failures, preflight
from jetwheel.errors import BuildError
from jetwheel.index.client.client import IndexClient
from jetwheel.index.server.config import add_user
from jetwheel.machine import Machine, this_machine
from jetwheel.model.profile import Profile
from jetwheel.model.recipe import Recipe, load_profile, load_recipes
from jetwheel.model.stepsource import StepSource
from jetwheel.runners import LocalRunner, make_runner
from jetwheel.runners.base import MARK
from jetwheel.runners.ccache import CompilerCache
from jetwheel.sources.fetch import make_archive
from jetwheel.workflow.context import settings
from jetwheel.workflow.serve import running_index


@dataclass
class Run:
    """One timed run of the step: wall time, and when its build command started and ended."""

    seconds: float = 0.0
    compile_start: float | None = None
    compile_end: float | None = None
    resumed: bool = False
    lines: list[str] = field(default_factory=list)

    @property
    def compile_seconds(self) -> float:
        return (self.compile_end or 0.0) - (self.compile_start or 0.0)


def build_command(plan: Plan) -> int:
    """1-based index of the command that compiles (the frontend writing the raw wheel)."""
    return next(i for i, c in enumerate(plan.steps[-1].commands, 1) if '"$JW_WORK/raw"' in c)


def timed(
    plan: Plan,
    recipes: dict[str, Recipe],
    profile: Profile,
    client: IndexClient,
    work: Path,
    ccache: Path,
    kill_after: float | None = None,
    sources: Path | None = None,
) -> Run:
    """Run the plan (its last step is the only one not on the index); with kill_after, send this
    process SIGINT that many seconds into the compile, as a user's Ctrl-C."""
    run, compiling = Run(), build_command(plan)
    started = time.perf_counter()

    def watch(e: Event) -> None:
        now = time.perf_counter() - started
        if e.kind == "resume":
            run.resumed = True
        if e.kind == "line" and e.message.startswith(MARK):
            index = int(e.message[len(MARK) :].split("/")[0])
            if index == compiling:
                run.compile_start = now
                if kill_after is not None:
                    threading.Timer(kill_after, os.kill, (os.getpid(), signal.SIGINT)).start()
            elif index == compiling + 1:
                run.compile_end = now

    runner = LocalRunner(settings=settings(), ccache=CompilerCache(directory=ccache))
    opts = Options(work_root=work, log_root=work.parent / "logs", sources=sources)
    try:
        run_plan(plan, recipes, profile, runner, client, opts, watch)
    except BuildError as e:
        if kill_after is None or "interrupted" not in str(e):
            raise
    run.seconds = time.perf_counter() - started
    if run.compile_end is None and run.compile_start is not None:
        run.compile_end = run.seconds
    return run


def unpublish(client: IndexClient, plan: Plan) -> None:
    """Take the step's wheel off the index, so the next run builds it again."""
    cached = client.cached(plan.steps[-1].cache_key)
    if cached:
        client.delete(cached)


XGRAMMAR = SHARED / "xgrammar-0.1.16.tar.gz"


def xgrammar_sources(tmp: Path, recipes: dict[str, Recipe]) -> Path:
    """A local source directory holding xgrammar's pinned archive, packed from the shared copy of
    upstream (as `inv sources.fetch --from` does): the build reads it instead of GitHub."""
    src = StepSource("git", sha256=recipes["xgrammar"].source.sha256)
    make_archive("xgrammar", "0.1.16", src, tmp / "sources", XGRAMMAR)
    return tmp / "sources"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kill-at", type=float, default=0.7, help="fraction of the cold compile to kill at")
    parser.add_argument("--xgrammar", action="store_true", help="the real xgrammar build instead of mini-cuda")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jetwheel-bench-hours-") as tmp:
        root, ht = Path(tmp) / "packages", Path(tmp) / "htpasswd"
        add_user(ht, "bench", "bench")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        config = Path(tmp) / "config.toml"
        config.write_text('[index.roles]\nbench = "admin"\n')  # unpublish deletes
        index_args = ["--config", str(config), "--root", str(root), "--port", str(port), "--htpasswd", str(ht)]
        with running_index([*index_args, "--upstream", "https://pypi.org/simple"], url):
            client = IndexClient(url, "bench", "bench")
            if args.xgrammar:
                # the real recipe, for this machine's cp312 (python3.12: pyenv's where it is there)
                if (
                    shutil.which("pyenv")
                    and subprocess.run(["python3.12", "--version"], capture_output=True).returncode
                ):
                    os.environ["PYENV_VERSION"] = "3.12.1"  # pyenv's shim may have set its own
                recipes, profile = load_recipes(), load_profile("host-cp312")
                sources = xgrammar_sources(Path(tmp), recipes)
                plan = make_plan(recipes, profile, "xgrammar", "local", this_machine())
            else:
                sources = None
                recipes, profile = load_recipes(), load_profile("mini")
                plan = make_plan(recipes, profile, "mini-cuda", "local", this_machine())
                # its dependencies first, untimed: each timed run builds mini-cuda only
                timed(plan, recipes, profile, client, Path(tmp) / "w0", Path(tmp) / "cc0", sources=sources)
                unpublish(client, plan)

            cold = timed(plan, recipes, profile, client, Path(tmp) / "w1", Path(tmp) / "cc-cold", sources=sources)
            unpublish(client, plan)
            kill_after = args.kill_at * cold.compile_seconds
            killed = timed(
                plan, recipes, profile, client, Path(tmp) / "w2", Path(tmp) / "cc-killed", kill_after, sources=sources
            )
            resumed = timed(plan, recipes, profile, client, Path(tmp) / "w2", Path(tmp) / "cc-killed", sources=sources)
            unpublish(client, plan)
            # a clean rebuild (new work directory) with the cache the cold build filled
            warm = timed(plan, recipes, profile, client, Path(tmp) / "w3", Path(tmp) / "cc-cold", sources=sources)

            # the Jetson plan, as a user runs it before the first hour: docker runner, arm64
            tplan_recipes, tprofile = load_recipes(), load_profile("triton-25.04")
            tplan = make_plan(tplan_recipes, tprofile, "vllm", "docker", Machine(12, 64))
            started = time.perf_counter()
            runner = make_runner("docker", settings(), arch="aarch64")
            checks = preflight(tplan, tplan_recipes, tprofile, runner, client, Needs(sources=sources))
            pf_seconds = time.perf_counter() - started

    assert resumed.resumed and not cold.resumed and not warm.resumed
    print(f"{plan.steps[-1].name} {plan.steps[-1].version} step (index {url}, {this_machine().cores} cores):")
    for label, r in (
        ("cold build", cold),
        (f"killed at {args.kill_at:.0%} of compile", killed),
        ("rerun after the kill (resumed)", resumed),
        ("clean rebuild, warm ccache", warm),
    ):
        print(f"  {label:<34} {r.seconds:7.2f} s   (compile {r.compile_seconds:6.2f} s)")
    r_resume, r_warm = resumed.seconds / cold.seconds, warm.seconds / cold.seconds
    c_resume = resumed.compile_seconds / cold.compile_seconds
    c_warm = warm.compile_seconds / cold.compile_seconds
    print(f"  resumed / cold      {r_resume:.2f}x  (target <= 0.40x: {'met' if r_resume <= 0.4 else 'MISSED'})")
    print(f"  warm-cache / cold   {r_warm:.2f}x  (target <= 0.25x: {'met' if r_warm <= 0.25 else 'MISSED'})")
    print(f"  compile only: resumed {c_resume:.2f}x, warm-cache {c_warm:.2f}x of the cold compile")
    print(
        f"preflight, triton-25.04 vllm plan ({len(tplan.steps)} steps, {len(checks)} checks, "
        f"{len(failures(checks))} failing here): {pf_seconds:.1f} s  "
        f"(target < 120 s: {'met' if pf_seconds < 120 else 'MISSED'}); {pf_seconds / cold.seconds:.2f}x the cold step"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
