"""The door's tasks that had no test of their own, through the real door in-process: each parses,
calls its workflow, and prints what it returns (index.upload-artifact, index.yank, status,
policy.from-image, runtime.tarball --upload). And what every task does with `TASK --help`, `TASK -h`
and a mistyped option, through the door and through Invoke's own program on tasks.py (`inv`)."""

from __future__ import annotations

import copy
import json
import shutil
import socket
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import PASSWORD, USER, Server, door
from invoke.collection import Collection
from invoke.program import Program
from wheelmaker import make_wheel

import tasks
from jetwheel.cli import namespace, program
from jetwheel.errors import ExitCode
from jetwheel.verify.policy import Policy, load, save

BUILDER = "localhost/jetwheel-builder:bookworm"
TASKS = sorted(namespace.task_names)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    """The task's stdout lines; it must exit 0 (a failure raises SystemExit)."""
    program().run(["jetwheel", *argv])
    return capsys.readouterr().out.splitlines()


@pytest.fixture
def logged_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JETWHEEL_INDEX_USER", USER)
    monkeypatch.setenv("JETWHEEL_INDEX_PASSWORD", PASSWORD)


def test_artifact_upload_yank_and_status(
    server: Server, logged_in: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    artifact = tmp_path / "nvpl_slim_24.04.tar"
    artifact.write_bytes(b"not really a tar")
    assert run(capsys, "index.upload-artifact", str(artifact), "--index", server.url) == [
        f"{server.url}/packages/nvpl_slim_24.04.tar"
    ]
    with urllib.request.urlopen(f"{server.url}/packages/nvpl_slim_24.04.tar") as r:
        assert r.read() == b"not really a tar"
    wheel = make_wheel(tmp_path, "demo-pkg", "1.0")
    server.client().upload(wheel)
    assert run(capsys, "index.yank", wheel.name, "--reason", "broken", "--index", server.url) == [
        f"yanked {wheel.name}"
    ]
    doc = json.loads("\n".join(run(capsys, "status", "--index", server.url, "--json")))
    assert doc["projects"] == 1 and doc["yanked"] == 1
    summary = run(capsys, "status", "--index", server.url)
    assert summary[0].startswith("1 projects, 2 files") and summary[1].endswith("; 1 yanked")


@pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed")
def test_policy_from_image_then_the_runtime_tarball_of_what_it_lacks_uploaded(
    server: Server, logged_in: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jetwheel.runners.baseimage import ensure_base_image

    ensure_base_image()
    policy = tmp_path / "bookworm.policy.json"
    [said] = run(capsys, "policy.from-image", BUILDER, "--out", str(policy))
    full = load(policy)
    assert said.startswith(f"{policy}: {len(full.names)} library names") and full.names
    # a runtime without zlib, and a wheel whose extension needs libz.so.1: the tarball carries zlib
    nozlib = tmp_path / "nozlib.policy.json"
    save(
        Policy(full.sources, full.machine, full.files, {n: p for n, p in full.names.items() if "libz." not in n}),
        nozlib,
    )
    src = tmp_path / "ext.c"
    src.write_text("int deflate(void); int f(void){return deflate();}\n")
    so = tmp_path / "ext.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(so), str(src), "-Wl,--no-as-needed", "-lz"], check=True)
    wheel = make_wheel(tmp_path, "okpkg", "1.0", extra={"okpkg/_ext.so": so.read_bytes()})
    out = tmp_path / "runtime.tar"
    argv = [
        "runtime.tarball",
        "--paths",
        str(wheel),
        "--builder",
        BUILDER,
        "--policy",
        str(nozlib),
        "--profile",
        "mini",
    ]
    lines = run(capsys, *argv, "--out", str(out), "--index", server.url, "--upload")
    assert lines[0].startswith("  lib/libz.so.1  (zlib1g: ") and lines[1].startswith(f"{out}  sha256 ")
    assert lines[2] == f"{server.url}/packages/runtime.tar"
    with urllib.request.urlopen(lines[2]) as r:
        assert r.read() == out.read_bytes()


def help_text(capsys: pytest.CaptureFixture[str], door: Program, *argv: str) -> str:
    """What the program prints for ARGV, which must end in a clean exit and print nothing on stderr."""
    with pytest.raises(SystemExit) as done:
        door.run(list(argv))
    said = capsys.readouterr()
    assert not done.value.code and not said.err, said.err
    return said.out


def inv() -> Program:
    """Invoke's own program on tasks.py, loaded as `inv` loads it."""
    return Program(namespace=Collection.from_module(tasks), binary="inv[oke]")


# each door by the name it is called by: the jetwheel program, and Invoke's own on tasks.py
DOORS: dict[str, Callable[[], Program]] = {"jetwheel": program, "inv[oke]": inv}


@pytest.fixture
def nothing_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An empty working directory that stays empty; no task runs and nothing connects anywhere."""

    def refused(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"not while reading argv: {args[1:]}")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(Program, "execute", refused)
    monkeypatch.setattr(socket.socket, "connect", refused)
    yield
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("binary", DOORS)
@pytest.mark.parametrize("task", TASKS)
def test_help_after_the_task_is_the_help_before_it_and_runs_nothing(
    task: str, binary: str, flag: str, nothing_runs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    before = help_text(capsys, DOORS[binary](), binary, "--help", task)
    assert before.startswith(f"Usage: {binary} [--core-opts] {task} ")
    assert help_text(capsys, DOORS[binary](), binary, task, flag) == before


@pytest.mark.parametrize("binary", DOORS)
@pytest.mark.parametrize(
    "argv",
    [
        ("dist.server", "scheduler:8786", "--help"),  # two positional arguments still missing
        ("index.export", "-x", "-h"),  # a mistyped option before it
        ("index.yank", "f.whl", "--reason", "--help"),  # an option still waiting for its value
        ("index.export", "--help", "out", "--bogus"),  # the rest is not read
        ("build-wheel", "demo", "-h"),  # a task's name as a value
    ],
)
def test_help_anywhere_after_the_task_is_its_help(
    binary: str, argv: tuple[str, ...], nothing_runs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    before = help_text(capsys, DOORS[binary](), binary, "--help", argv[0])
    assert help_text(capsys, DOORS[binary](), binary, *argv) == before


def test_no_task_option_takes_h_from_the_help() -> None:
    # Invoke gives an option the first free letter of its name; parsing.HelpTask keeps -h free (a copy:
    # Invoke pops a task's help texts as it lists its arguments)
    taken = [task for task in TASKS if any("h" in a.names for a in copy.deepcopy(namespace[task]).get_arguments())]
    assert taken == []


@pytest.mark.parametrize(
    "argv",
    [
        ("index.export", "--rot", "out"),
        ("index.upload-artifact", "-x"),
        ("index.yank", "--reson", "broken"),
        ("runtime.tarball", "--paht", "a.whl", "b"),
    ],
)
def test_a_dash_led_positional_is_an_unknown_option_named_in_one_line(
    argv: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    task, option = argv[0], argv[1]
    assert door(*argv) == ExitCode.USAGE
    said = capsys.readouterr()
    assert said.err.splitlines() == [f"jetwheel: {task}: unknown option {option!r} (see --help {task})"]
    assert said.out == "" and not list(tmp_path.iterdir())


def test_inv_refuses_a_dash_led_positional_before_the_task_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as done:
        inv().run(["inv", "index.export", "-x"])
    assert done.value.code == ExitCode.USAGE
    assert capsys.readouterr().err.splitlines() == [
        "jetwheel: index.export: unknown option '-x' (see --help index.export)"
    ]
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("binary", "code"), [("jetwheel", ExitCode.USAGE), ("inv[oke]", 1)])
def test_a_value_of_the_wrong_kind_is_one_line_and_runs_nothing(
    binary: str, code: int, nothing_runs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        DOORS[binary]().run([binary, "index.serve", "--port", "80a"])
    assert done.value.code == code
    said = capsys.readouterr()
    assert said.err.splitlines() == ["'index.serve': --port takes int, not '80a'"] and said.out == ""
    # a dashed option is named as it is typed, so that retyping it works
    with pytest.raises(SystemExit):
        DOORS[binary]().run([binary, "index.serve", "--max-upload-mb", "8x"])
    assert capsys.readouterr().err.splitlines() == ["'index.serve': --max-upload-mb takes int, not '8x'"]
