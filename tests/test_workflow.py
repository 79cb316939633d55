"""The workflows behind the tasks, called in-process: build-wheel's choices (its runner, one engine or
a fleet, preflight before anything is built) and the door's parse of `--runner`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Server, door, free_port
from podman_engines import podman_services

from jetwheel.build.engine import Event
from jetwheel.errors import ExitCode, RunnerError, UsageError, exit_code
from jetwheel.model.runnerkind import RUNNER_KINDS, parse_runner
from jetwheel.runners import DockerRunner, LocalRunner
from jetwheel.workflow.build import (
    BuildRequest,
    Notice,
    PreflightFailed,
    PreflightPassed,
    build,
    plan_build,
    where_to_build,
)


def test_each_runner_kind_parses_to_itself() -> None:
    assert [parse_runner(k) for k in ("local", "docker", "cross")] == list(RUNNER_KINDS)


def test_an_unknown_runner_is_a_usage_error_naming_it_and_the_choices() -> None:
    with pytest.raises(UsageError) as e:
        parse_runner("ssh")
    assert str(e.value) == "unknown runner 'ssh'; use one of: local, docker, cross"
    assert exit_code(e.value) == ExitCode.USAGE


@pytest.mark.parametrize(
    "argv",
    [
        ("build-wheel", "mini-cuda", "--profile", "mini", "--runner", "podman", "--dry-run"),
        ("demo", "--runner", "podman"),
        ("cache.stats", "--runner", "podman"),
    ],
)
def test_a_bad_runner_exits_2_with_one_line_at_every_task_that_takes_one(
    argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    assert door(*argv) == ExitCode.USAGE
    assert capsys.readouterr().err == "jetwheel: error: unknown runner 'podman'; use one of: local, docker, cross\n"


def test_the_runner_is_the_one_asked_for_else_the_profiles_machines() -> None:
    assert plan_build(BuildRequest("mini-cuda", "mini")).runner == "local"  # the mini profile is this machine's
    docker = plan_build(BuildRequest("mini-cuda", "mini", runner="docker"))
    assert docker.runner == "docker" and {s.runner for s in docker.plan.steps} == {"docker"}
    # a fleet builds in containers, whatever --runner says
    assert plan_build(BuildRequest("mini-cuda", "mini", runner="local", engines="a,b")).runner == "docker"


def test_without_engines_the_build_runs_on_one_runner() -> None:
    local = where_to_build(plan_build(BuildRequest("mini-cuda", "mini")), BuildRequest("mini-cuda", "mini"))
    assert isinstance(local.runner, LocalRunner) and local.fleet == () and local.down == ()
    req = BuildRequest("mini-cuda", "mini", runner="docker", engine="podman", connection="remote", gpu=True)
    one = where_to_build(plan_build(req), req)
    assert isinstance(one.runner, DockerRunner) and one.runner.connection == "remote" and one.fleet == ()


@pytest.fixture(scope="module")
def one_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with podman_services(tmp_path_factory.mktemp("engine"), 1) as procs:
        yield next(iter(procs))


def test_with_engines_the_build_runs_on_those_that_answer_and_warns_of_the_others(
    one_engine: str, tmp_path: Path
) -> None:
    gone = f"unix://{tmp_path}/gone.sock"
    req = BuildRequest("mini-llm", "fleet", engine="podman", engines=f"{one_engine},{gone}")
    where = where_to_build(plan_build(req), req)
    engines = [e for e in where.fleet if e.facts is not None]  # (this host joins for host steps)
    assert len(engines) == 1 and isinstance(engines[0].runner, DockerRunner)
    assert engines[0].runner.connection == one_engine
    assert where.runner is where.fleet[0].runner
    assert len(where.down) == 1 and gone in where.down[0]
    # the build's first word is that warning, before any check or step
    notes = build(req, lambda e: None)
    first = next(notes)  # (the rest, preflight and the build, never runs)
    assert isinstance(first, Notice) and first.text.endswith("; building without it") and gone in first.text


def test_with_no_engine_answering_nothing_is_planned_to_run(tmp_path: Path) -> None:
    req = BuildRequest("mini-llm", "fleet", engines=f"unix://{tmp_path}/a.sock,unix://{tmp_path}/b.sock")
    with pytest.raises(RunnerError, match="no engine answered"):
        where_to_build(plan_build(req), req)


def test_a_failed_preflight_refuses_the_build_before_any_step(server: Server) -> None:
    events: list[Event] = []
    # a petabyte of free disk: no machine has it, every other check can pass
    req = BuildRequest("mini-torch", "mini", index=server.url, disk_gb=1e6)
    with pytest.raises(PreflightFailed) as refused:
        list(build(req, events.append))
    assert events == []  # no step started
    failed = [c for c in refused.value.checks if not c.ok]
    assert [c.check for c in failed] == ["mini-torch: disk"]
    assert str(refused.value).startswith(f"preflight: {len(failed)} of {len(refused.value.checks)} checks")
    assert str(refused.value).endswith("; fix them or pass --no-preflight")
    assert exit_code(refused.value) == ExitCode.CHECK_FAILED


def test_preflight_only_checks_and_builds_nothing(stack_server: Server) -> None:
    events: list[Event] = []
    before = stack_server.snapshot()
    req = BuildRequest("mini-cuda", "mini", index=stack_server.url, preflight="only", disk_gb=1)
    notes = list(build(req, events.append))
    assert len(notes) == 1 and isinstance(notes[0], PreflightPassed) and all(c.ok for c in notes[0].checks)
    assert events == [] and stack_server.snapshot() == before


def test_usage_errors_of_the_door_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert door("triton.check") == ExitCode.USAGE
    assert door("index.token", "--user", "x") == ExitCode.USAGE
    assert door("index.token", "--read") == ExitCode.USAGE
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "jetwheel: error: give --index-url (check the index) or --image (smoke-test an image)",
        "jetwheel: error: only read-only tokens are issued: pass --read",
        "jetwheel: error: name the index user the token stands for: --user NAME",
    ]


@pytest.mark.slow
def test_the_demo_on_a_fresh_machine_publishes_and_installs_the_mini_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README's set-up (a), in-process (~70 s: the mini stack built, a venv made). A fresh index config
    names no roles: the demo's user must still be let publish the names the recipes own."""
    from jetwheel.index.server.config import load_config
    from jetwheel.workflow.demo import run_demo

    (tmp_path / "index").mkdir()
    (tmp_path / "index" / "config.toml").write_text(
        f'[index]\nroot = "packages"\nhost = "127.0.0.1"\nport = {free_port()}\nhtpasswd = "htpasswd"\n'
        'upstream = "https://pypi.org/simple"\n'  # the build tools (build, auditwheel) come through it
    )
    monkeypatch.chdir(tmp_path)
    lines = list(run_demo(lambda e: None, serve_after=False))
    assert [line.split()[0] for line in lines if line.endswith(".whl")] == ["published"] * 3
    assert any(line.startswith("fresh venv: mini_vision.boxes(3) = 3.0") for line in lines), lines
    assert lines[-1].startswith("install it anywhere on the LAN:  pip install --index-url http://127.0.0.1:")
    assert load_config().roles == {"demo": "builder"}
