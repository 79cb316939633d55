"""Several engines, one plan: the fleet stand-in plan (profile fleet: mini-torch, then mini-vision,
mini-audio and mini-text in parallel, then mini-llm needing all three) on three real podman
services, one of them killed mid-step."""

from __future__ import annotations

import dataclasses
import io
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Server, door, install_and_run, start_server, stop_server
from podman_engines import podman_services

from jetwheel.build.engine import BuildRun, Event, Options, StepResult
from jetwheel.build.plan import Plan, make_plan
from jetwheel.build.schedule import Engine, _Board, connect, critical_path, engine_names, refusal, run_fleet, sized
from jetwheel.errors import PlanError
from jetwheel.machine import Machine, this_machine
from jetwheel.model.profile import Profile
from jetwheel.model.recipe import Recipe, load_profile, load_recipes
from jetwheel.model.step import BuildStep
from jetwheel.runners import DockerRunner, LocalRunner
from jetwheel.runners.baseimage import BUILDER, ensure_base_image
from jetwheel.runners.probe import EngineFacts, probe
from jetwheel.workflow.context import settings

CA = "/etc/ssl/certs/ca-certificates.crt"
IMAGE = BUILDER
BRANCHES = ("mini-audio", "mini-text", "mini-vision")


def fleet_plan(machine: Machine | None = None) -> tuple[dict[str, Recipe], Profile, Plan]:
    recipes, profile = load_recipes(), load_profile("fleet")
    return recipes, profile, make_plan(recipes, profile, "mini-llm", "docker", machine or this_machine())


def facts(name: str, arch: str = "x86_64", images: frozenset[str] = frozenset({IMAGE}), gpu: bool = False) -> Engine:
    return Engine(name, DockerRunner(engine="podman", connection=name), EngineFacts(name, 12, 64.0, arch, gpu, images))


# -- the scheduler's decisions, in-process ----------------------------------------------------------
def test_engine_list_from_flag_or_file(tmp_path: Path) -> None:
    assert engine_names("jetson1, jetson2,ssh://b@jetson3") == ["jetson1", "jetson2", "ssh://b@jetson3"]
    (tmp_path / "fleet.toml").write_text('engines = ["jetson1", "unix:///run/podman/x.sock"]\n')
    assert engine_names(str(tmp_path / "fleet.toml")) == ["jetson1", "unix:///run/podman/x.sock"]
    (tmp_path / "engines").write_text("jetson1  # the one with the fan\n\njetson2\n")
    assert engine_names(str(tmp_path / "engines")) == ["jetson1", "jetson2"]
    with pytest.raises(PlanError, match="twice"):
        engine_names("a,b,a")
    (tmp_path / "bad.toml").write_text("engines = [\n")
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00")
    for bad in ("bad.toml", "binary"):  # one clean line naming the file, not a traceback
        with pytest.raises(PlanError, match=f"{bad}: not a list of engines"):
            engine_names(str(tmp_path / bad))


def test_engine_facts_decide_who_takes_a_step_and_its_max_jobs() -> None:
    recipes, _profile, plan = fleet_plan(Machine(cores=2, memory_gb=8))
    step = plan.steps[0]
    assert refusal(facts("big"), step, "x86_64", gpu=False) == ""
    assert "lacks image" in refusal(facts("bare", images=frozenset()), step, "x86_64", gpu=False)
    assert "aarch64 engine, x86_64 target" in refusal(facts("orin", arch="aarch64"), step, "x86_64", gpu=False)
    assert refusal(facts("orin", arch="aarch64"), step, "x86_64", gpu=False, emulate="x86_64") == ""
    assert refusal(facts("nogpu"), step, "x86_64", gpu=True) == "no GPU"
    assert refusal(facts("gpu", gpu=True), step, "x86_64", gpu=True) == ""
    assert "host steps" in refusal(Engine("host", LocalRunner(settings=settings()), None), step, "x86_64", gpu=False)
    # the plan was made on a 2-core box; on a 12-core, 64 GiB engine the step gets 12 jobs, same cache key
    big = sized(step, recipes["mini-torch"], facts("big"))
    assert step.env["MAX_JOBS"] == "2" and big.env["MAX_JOBS"] == big.env["CMAKE_BUILD_PARALLEL_LEVEL"] == "12"
    assert big.cache_key == step.cache_key


def test_critical_path_is_the_longest_chain() -> None:
    _r, _p, plan = fleet_plan()
    secs = {"mini-torch": 10.0, "mini-vision": 5.0, "mini-audio": 7.0, "mini-text": 3.0, "mini-llm": 4.0}
    assert critical_path(plan, secs) == 21.0
    # a step published after another it only requires at run time still waits for it (verify
    # resolves its requirements on the index), though nothing of it is installed into the build
    llm = next(s for s in plan.steps if s.name == "mini-llm")
    later = dataclasses.replace(
        plan, steps=(*plan.steps[:-1], dataclasses.replace(llm, deps=("mini-torch",), after=llm.deps))
    )
    assert critical_path(later, secs) == 21.0


def test_a_step_is_handed_out_only_after_what_it_requires_at_run_time_is_published() -> None:
    _r, _p, plan = fleet_plan()
    llm = next(s for s in plan.steps if s.name == "mini-llm")
    # mini-llm installs only mini-torch, but requires the three branches at run time
    steps = tuple(s if s is not llm else dataclasses.replace(s, deps=("mini-torch",), after=s.deps) for s in plan.steps)
    board = _Board(dataclasses.replace(plan, steps=steps), {s.name: {"e"} for s in steps})
    first = board.take("e")
    assert first is not None and first.name == "mini-torch"
    board.finish(first, StepResult(first, "published", first.wheel))
    branches = [board.take("e") for _ in BRANCHES]
    assert sorted(b.name for b in branches if b) == list(BRANCHES)
    handed: list[BuildStep | None] = []
    waiter = threading.Thread(target=lambda: handed.append(board.take("e")))
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive()  # its build needs nothing more, but verify would miss the branches
    for b in branches:
        assert b is not None
        board.finish(b, StepResult(b, "published", b.wheel))
    waiter.join(5)
    assert [h.name for h in handed if h] == ["mini-llm"]


def test_no_engine_for_a_step_fails_before_anything_runs(server: Server, tmp_path: Path) -> None:
    recipes, profile, plan = fleet_plan()
    with pytest.raises(PlanError, match=r"no engine may build mini-torch \(bare: lacks image"):
        run_fleet(
            BuildRun.on_index(plan, recipes, profile, server.client(), Options()), [facts("bare", images=frozenset())]
        )
    assert server.snapshot() == {}


def test_cli_with_no_engine_answering_is_one_clean_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gone = f"unix://{tmp_path}/none.sock,unix://{tmp_path}/gone.sock"
    code = door("build-wheel", "mini-llm", "--profile", "fleet", "--engines", gone)
    err = capsys.readouterr().err
    assert code == 3 and err.startswith("jetwheel: error: no engine answered") and len(err.splitlines()) == 1


# -- three real podman services -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    ensure_base_image()
    with podman_services(tmp_path_factory.mktemp("engines"), 3) as procs:
        yield procs


@pytest.mark.slow
def test_probe_reads_the_engines_facts(engines: dict[str, subprocess.Popen[bytes]]) -> None:
    url = next(iter(engines))
    got = probe(DockerRunner(engine="podman", connection=url), [IMAGE, "localhost/no-such-image:1"])
    here = this_machine()
    assert (got.name, got.arch, got.cores, got.images) == (url, "x86_64", here.cores, frozenset({IMAGE}))
    assert abs(got.memory_gb - here.memory_gb) < 0.5


@pytest.mark.slow
def test_three_engines_build_the_dag_and_survive_a_killed_engine_and_container(
    engines: dict[str, subprocess.Popen[bytes]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.path.exists(CA):
        monkeypatch.setenv("JETWHEEL_CA_BUNDLE", CA)
    recipes, profile, plan = fleet_plan()
    server = start_server(tmp_path / "packages")
    events: list[Event] = []
    killed: list[str] = []
    stopped: list[str] = []

    def listener(e: Event) -> None:
        events.append(e)
        # mid-step: at the first line the container prints for mini-audio, kill that engine's
        # service; at mini-text's, kill its container (the engine lives on)
        if e.kind == "line" and e.step == "mini-audio" and not killed:
            killed.append(e.engine)
            engines[e.engine].send_signal(signal.SIGKILL)
        if e.kind == "line" and e.step == "mini-text" and not stopped:
            stopped.append(e.engine)
            ids = subprocess.run(
                ["podman", "ps", "-q", "--filter", "name=^jetwheel-mini-text-"], capture_output=True, text=True
            ).stdout.split()
            subprocess.run(["podman", "kill", *ids], capture_output=True, check=True)

    try:
        fleet, down = connect(list(engines), plan, "podman", settings=settings())  # JETWHEEL_CA_BUNDLE set above
        assert down == [] and [e.name for e in fleet] == list(engines)
        options = Options(work_root=tmp_path / "w", log_root=tmp_path / "l")
        results = run_fleet(
            BuildRun.on_index(plan, recipes, profile, server.client(), options).telling(listener), fleet
        )
        assert [r.status for r in results] == ["published"] * 5
        # each lost only that attempt; the step was built and published on another engine
        lost = {e.step: (e.engine, e.message) for e in events if e.kind == "lost"}
        assert lost.keys() == {"mini-audio", "mini-text"}
        assert lost["mini-audio"][0] == killed[0] and "stopped answering" in lost["mini-audio"][1]
        assert lost["mini-text"][0] == stopped[0] and "container was killed (exit 137)" in lost["mini-text"][1]
        by = {e.step: e.engine for e in events if e.kind == "published"}
        assert by["mini-audio"] != killed[0] and by["mini-text"] != stopped[0]
        # the three branches overlapped: each started before the first of them was published
        first_branch_done = min(i for i, e in enumerate(events) if e.kind == "published" and e.step in BRANCHES)
        assert {e.step for e in events[:first_branch_done] if e.kind == "start"} >= set(BRANCHES)
        assert len({e.engine for e in events if e.kind == "published"}) >= 2
        # nothing half-built: exactly the five wheels, each once, no staging leftovers
        assert sorted(server.snapshot()) == sorted(s.wheel for s in plan.steps)
        assert list((server.root / ".jetwheel" / "tmp").iterdir()) == []
        code = (
            "import mini_llm, mini_audio, mini_text, mini_torch; print(mini_llm.total(3), "
            "all(mini_torch.has_op(f'{p}::op') for p in ('mini_audio', 'mini_text', 'mini_llm')))"
        )
        assert install_and_run(server.simple, "mini-llm", code, tmp_path / "venv").split() == ["3.0", "True"]
    finally:
        stop_server(server)
        # the killed engine's container lives on in conmon; the shared store holds it: remove it
        ours = ["--filter", "name=^jetwheel-mini-(audio|text)-"]
        left = subprocess.run(["podman", "ps", "-a", "-q", *ours], capture_output=True, text=True).stdout.split()
        if left:
            subprocess.run(["podman", "rm", "-f", *left], capture_output=True)


def test_live_view_has_one_row_per_engine() -> None:
    from rich.console import Console

    from jetwheel.build.progress import LiveProgress

    view = LiveProgress()
    for e in (
        Event("engine", message="x86_64, 16 cores, 64 GiB", engine="jetson1"),
        Event("engine", message="aarch64, 12 cores, 64 GiB, GPU", engine="jetson2"),
        Event("start", "mini-audio", 2, 5, "mini_audio-0.1.0.whl", engine="jetson1"),
        Event("line", "mini-audio", 2, 5, "compiling ext.cpp", engine="jetson1"),
        Event("start", "mini-text", 3, 5, "mini_text-0.1.0.whl", engine="jetson2"),
        Event("lost", "mini-text", 3, 5, "engine jetson2 stopped answering", engine="jetson2"),
    ):
        view(e)
    console = Console(width=160, record=True, file=io.StringIO())
    console.print(view._render())
    rows = console.export_text().splitlines()
    assert any("jetson1" in r and "running mini-audio" in r and "compiling ext.cpp" in r for r in rows)
    assert any("jetson2" in r and "lost mini-text" in r for r in rows)
    assert any("mini-text" in r and "waiting" in r and "runs again elsewhere" in r for r in rows)
