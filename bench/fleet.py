"""Several engines, one plan: wall time of the fleet stand-in plan (profile fleet: mini-torch, then
mini-vision, mini-audio and mini-text in parallel, then mini-llm) on 1 engine and on 3, each into
a fresh index, against the plan's critical path (the longest chain of step times: no number of
engines beats it). The engines are podman services on this machine; 127.0.0.1 only, bounded.

    python bench/fleet.py            # goal: 3-engine wall <= 1.2x the critical path

Two critical paths are printed: from the steps' times on 1 engine (each step alone on the machine)
and from their times in the 3-engine run itself. The first is the goal's measure; the second
separates the scheduler's own cost (waiting, hand-over through the index) from that of three
builds sharing one machine's cores, which a fleet of separate Jetsons does not pay.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from conftest import start_server, stop_server  # noqa: E402
from podman_engines import podman_services  # noqa: E402

from jetwheel.build.engine import BuildRun, Options, StepResult  # noqa: E402
from jetwheel.build.plan import Plan, make_plan  # noqa: E402
from jetwheel.build.schedule import connect, critical_path, run_fleet  # noqa: E402
from jetwheel.machine import this_machine  # noqa: E402
from jetwheel.model.recipe import load_profile, load_recipes  # noqa: E402
from jetwheel.runners.baseimage import ensure_base_image  # noqa: E402
from jetwheel.workflow.context import settings  # noqa: E402

CA = "/etc/ssl/certs/ca-certificates.crt"


def build(plan: Plan, engines: list[str], tmp: Path) -> tuple[float, list[StepResult]]:
    """Wall time of the whole plan on `engines`, into a fresh index."""
    recipes, profile = load_recipes(), load_profile("fleet")
    server = start_server(tmp / "packages")
    try:
        fleet, down = connect(engines, plan, "podman", settings=settings())
        assert not down, down
        started = time.perf_counter()
        options = Options(work_root=tmp / "w", log_root=tmp / "l")
        results = run_fleet(BuildRun.on_index(plan, recipes, profile, server.client(), options), fleet)
        wall = time.perf_counter() - started
    finally:
        stop_server(server)
    assert [r.status for r in results] == ["published"] * len(plan.steps)
    return wall, results


def main() -> int:
    ensure_base_image()
    if os.path.exists(CA):
        os.environ.setdefault("JETWHEEL_CA_BUNDLE", CA)
    plan = make_plan(load_recipes(), load_profile("fleet"), "mini-llm", "docker", this_machine())
    with tempfile.TemporaryDirectory(prefix="jetwheel-bench-fleet-") as t:
        tmp = Path(t)
        with podman_services(tmp, 3) as services:
            urls = list(services)
            one, one_steps = build(plan, urls[:1], tmp / "one")
            three, three_steps = build(plan, urls, tmp / "three")
    solo = {r.step.name: r.seconds for r in one_steps}
    shared = {r.step.name: r.seconds for r in three_steps}
    cp_solo, cp_shared = critical_path(plan, solo), critical_path(plan, shared)
    cores = this_machine().cores
    print(f"fleet plan, {len(plan.steps)} steps (mini-torch -> mini-vision | mini-audio | mini-text -> mini-llm)")
    print("step seconds, 1 engine:  " + ", ".join(f"{k} {v:.1f}" for k, v in solo.items()))
    print("step seconds, 3 engines: " + ", ".join(f"{k} {v:.1f}" for k, v in shared.items()))
    print(f"wall: 1 engine {one:.1f}s, 3 engines {three:.1f}s, speed-up {one / three:.2f}x")
    print(
        f"critical path (steps alone): {cp_solo:.1f}s; 3-engine wall / critical path: {three / cp_solo:.2f}x "
        "(goal <= 1.2x)"
    )
    print(
        f"critical path (steps as run on 3 engines): {cp_shared:.1f}s; 3-engine wall / it: {three / cp_shared:.2f}x "
        "(the scheduler's own overhead)"
    )
    print(
        f"this machine has {cores} cores: the three engines are podman services on it, so the three parallel "
        "steps share them (a fleet of Jetsons gives each step its own)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
