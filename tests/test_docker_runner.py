"""The docker runner for real, on podman: the mini stack built in containers from the local
debootstrap base image, through the local engine and through a second podman service (the
remote-engine path several Jetsons use)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Server, install_and_run, start_server, stop_server

from jetwheel.build.engine import Options, run_plan
from jetwheel.build.plan import make_plan
from jetwheel.machine import this_machine
from jetwheel.model.recipe import load_profile, load_recipes
from jetwheel.runners import DockerRunner
from jetwheel.runners.baseimage import BUILDER, ensure_base_image

pytestmark = pytest.mark.slow
CA = "/etc/ssl/certs/ca-certificates.crt"


@pytest.fixture(scope="module")
def base_image() -> str:
    return ensure_base_image()


@pytest.fixture
def remote_engine(tmp_path: Path) -> Iterator[str]:
    sock = tmp_path / "podman.sock"
    proc = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{sock}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 20
    while not sock.exists() and time.time() < deadline:
        time.sleep(0.2)
    yield f"unix://{sock}"
    proc.terminate()
    proc.wait(10)


def build(server: Server, runner: DockerRunner, tmp: Path) -> list[str]:
    recipes, profile = load_recipes(), load_profile("mini")
    plan = make_plan(recipes, profile, "mini-vision", "docker", this_machine())
    assert all(s.image == BUILDER for s in plan.steps)
    results = run_plan(
        plan, recipes, profile, runner, server.client(), Options(work_root=tmp / "w", log_root=tmp / "l")
    )
    return [r.status for r in results]


def installs_and_runs(server: Server, tmp: Path) -> None:
    code = "import mini_vision, mini_torch; print(mini_vision.boxes(2), mini_torch.has_op('mini_vision::nms'))"
    assert install_and_run(server.simple, "mini-vision", code, tmp / "venv").split() == ["2.0", "True"]


def test_mini_stack_builds_in_podman_containers(base_image: str, tmp_path: Path) -> None:
    server = start_server(tmp_path / "packages")
    try:
        ca = CA if os.path.exists(CA) else ""
        assert build(server, DockerRunner(engine="podman", ca_bundle=ca), tmp_path) == ["published", "published"]
        installs_and_runs(server, tmp_path)
    finally:
        stop_server(server)


def test_docker_runner_through_a_remote_engine(base_image: str, remote_engine: str, tmp_path: Path) -> None:
    server = start_server(tmp_path / "packages")
    try:
        ca = CA if os.path.exists(CA) else ""
        runner = DockerRunner(engine="podman", connection=remote_engine, ca_bundle=ca)
        assert runner.base()[1:] == ["--remote", "--url", remote_engine]
        assert build(server, runner, tmp_path) == ["published", "published"]
        installs_and_runs(server, tmp_path)
    finally:
        stop_server(server)
