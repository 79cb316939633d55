"""Shared fixtures: a real index server on 127.0.0.1 and the mini stack built by the real engine."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import prefetch
import pytest

from jetwheel.build.engine import Options, run_plan
from jetwheel.build.plan import make_plan
from jetwheel.cli import program
from jetwheel.index.client.client import IndexClient
from jetwheel.index.server.config import add_user
from jetwheel.machine import this_machine
from jetwheel.model.recipe import load_profile, load_recipes
from jetwheel.pipcmd import clean_pip_env
from jetwheel.runners import LocalRunner
from jetwheel.workflow.context import settings
from jetwheel.workflow.serve import wait_ready

USER, PASSWORD = "ci", "s3cret-pass"


def pytest_collection_finish(session: pytest.Session) -> None:
    """The images the selected tests need begin in the background now (tests/prefetch.py)."""
    if not session.config.option.collectonly:
        prefetch.start(item.path.stem for item in session.items)


def door(*argv: str) -> int:
    """`jetwheel ARGV` through the real door, in-process: its exit code (0 when it returns)."""
    try:
        program().run(["jetwheel", *argv])
    except SystemExit as done:
        return int(done.code or 0)
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    root: Path
    proc: subprocess.Popen[bytes]
    htpasswd: Path

    @property
    def simple(self) -> str:
        return f"{self.url}/simple/"

    def client(self, user: str = USER, password: str = PASSWORD) -> IndexClient:
        return IndexClient(self.url, user, password)

    def snapshot(self) -> dict[str, bytes]:
        """Every visible file in the store and its bytes: 'byte-identical' is compared on this."""
        return {
            p.name: p.read_bytes() for p in sorted(self.root.iterdir()) if p.is_file() and not p.name.startswith(".")
        }


def start_server(root: Path, *extra: str, upstream: str = "https://pypi.org/simple") -> Server:
    root.mkdir(parents=True, exist_ok=True)
    htpasswd = root.parent / f"{root.name}.htpasswd"
    config = root.parent / f"{root.name}.config.toml"
    if not htpasswd.exists():
        add_user(htpasswd, USER, PASSWORD)
        config.write_text(f'[index.roles]\n{USER} = "admin"\n')  # the tests yank and delete
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jetwheel",
            "index.serve",
            "--config",
            str(config),
            "--root",
            str(root),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--htpasswd",
            str(htpasswd),
            "--upstream",
            upstream,
            *extra,
        ]
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc)
    return Server(url, root, proc, htpasswd)


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(10)
    except subprocess.TimeoutExpired:
        server.proc.kill()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = start_server(tmp_path / "packages")
    yield s
    stop_server(s)


@pytest.fixture(scope="session")
def stack_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One index for the session, holding the mini stack built by the engine with the local runner."""
    s = start_server(tmp_path_factory.mktemp("stack") / "packages")
    recipes, profile = load_recipes(), load_profile("mini")
    plan = make_plan(recipes, profile, "mini-cuda", "local", this_machine())
    work = tmp_path_factory.mktemp("work")
    run_plan(
        plan,
        recipes,
        profile,
        LocalRunner(settings=settings()),
        s.client(),
        Options(work_root=work / "w", log_root=work / "logs"),
    )
    yield s
    stop_server(s)


@pytest.fixture(scope="session")
def stack_wheels(stack_server: Server) -> dict[str, Path]:
    return {p.name.split("-")[0]: p for p in stack_server.root.glob("*.whl")}


def make_venv(path: Path) -> Path:
    venv.EnvBuilder(with_pip=True).create(path)
    return path / "bin" / "python"


def install_and_run(index: str, requirement: str, code: str, venv_dir: Path) -> str:
    """pip-install `requirement` from the index into a fresh venv, run `code` there, return stdout."""
    py = make_venv(venv_dir)
    subprocess.run(
        [str(py), "-m", "pip", "install", "--index-url", index, requirement],
        check=True,
        env=pip_env(),
        capture_output=True,
    )
    return subprocess.run([str(py), "-c", code], capture_output=True, text=True, check=True).stdout


def pip_download(
    index: str, requirement: str, dest: Path | str, deps: bool = False
) -> subprocess.CompletedProcess[str]:
    """`pip download` from the index only, as a user would run it."""
    cmd = [sys.executable, "-m", "pip", "download", "-d", str(dest), "--index-url", index, requirement]
    return subprocess.run(cmd if deps else [*cmd, "--no-deps"], capture_output=True, text=True, env=pip_env())


def pip_env() -> dict[str, str]:
    """pip as a user runs it, without this machine's pip.conf constraints or find-links."""
    return {**clean_pip_env(os.environ), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def run_in_arm64(image: str, script: str, code: str) -> str:
    """Run `script` (sh) in a fresh arm64 container (qemu) with $CODE set to `code`; return stdout."""
    out = subprocess.run(
        ["podman", "run", "--rm", "--arch", "arm64", "--network=host", "-e", f"CODE={code}", image, "sh", "-c", script],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout
