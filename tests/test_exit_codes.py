"""The exit-code contract (README, "Exit codes"): a script can tell a failed check from a bad
argument, a failed build and an index that did not answer. Through the real door, in-process."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest
from conftest import door
from invoke.exceptions import Exit
from wheelmaker import make_wheel

import jetwheel
from jetwheel.cli import clean_errors
from jetwheel.errors import (
    BuildError,
    CheckFailed,
    ExitCode,
    JetwheelError,
    OutOfMemory,
    PlanError,
    PublishError,
    RecipeError,
    SourceError,
    UploadRejected,
    UsageError,
    VerifyFailed,
    exit_code,
)


def test_each_kind_of_error_has_its_code() -> None:
    assert exit_code(VerifyFailed("x")) == ExitCode.CHECK_FAILED  # a BuildError, but a check said no
    assert exit_code(RecipeError("x")) == exit_code(PlanError("x")) == exit_code(UsageError("x")) == ExitCode.USAGE
    assert exit_code(CheckFailed("x")) == ExitCode.CHECK_FAILED  # preflight said no before anything ran
    assert exit_code(BuildError("x")) == exit_code(SourceError("x")) == exit_code(OutOfMemory("x")) == 3
    assert exit_code(UploadRejected("x")) == exit_code(PublishError("x")) == ExitCode.INDEX
    assert [int(c) for c in ExitCode] == [0, 1, 2, 3, 4, 5, 130]


def test_a_new_kind_of_error_must_state_its_exit_code() -> None:
    # no fallback hides a new kind: defining it without a code fails at once, at import
    with pytest.raises(TypeError, match="states its exit code"):

        class Unmapped(JetwheelError):
            pass

    class Mapped(JetwheelError):
        code = ExitCode.INDEX

    class Refined(BuildError):  # a refinement of a kind is that kind unless it says otherwise
        pass

    assert exit_code(Mapped("x")) == ExitCode.INDEX and exit_code(Refined("x")) == ExitCode.BUILD_FAILED


def every_error_type() -> set[type[JetwheelError]]:
    for mod in pkgutil.walk_packages(jetwheel.__path__, "jetwheel."):
        if not mod.name.endswith("__main__"):
            importlib.import_module(mod.name)
    todo, seen = [JetwheelError], set()
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub.__module__.startswith("jetwheel.") and sub not in seen:
                seen.add(sub)
                todo.append(sub)
    return seen


def test_every_error_type_of_the_package_has_a_code_of_the_table() -> None:
    found = every_error_type()
    assert {t.__name__ for t in found} >= {"CannotCheck", "PreflightFailed", "BadCredentials", "EngineLost"}
    assert all(isinstance(t.code, ExitCode) and t.code != ExitCode.OK for t in found)


def test_the_doctor_that_cannot_look_exits_5_with_its_own_words(capsys: pytest.CaptureFixture[str]) -> None:
    assert door("doctor", "--python", "/no/such/python") == ExitCode.NOT_CHECKED
    assert capsys.readouterr().err.startswith("jetwheel: could not check: --python /no/such/python: cannot run it")


def test_argument_errors_exit_2_not_invokes_1() -> None:
    assert door("verify", "--no-such-flag") == ExitCode.USAGE
    assert door("no-such-task") == ExitCode.USAGE
    assert door("build-wheel", "vllm", "--profile", "no-such-profile", "--dry-run") == ExitCode.USAGE
    assert door("verify", "-p", "/no/such/file.whl") == ExitCode.USAGE


def test_a_failed_check_exits_1(tmp_path: Path) -> None:
    # mini-cuda's recipe promises an extension module this wheel lacks
    wheel = make_wheel(tmp_path, "mini-cuda", "0.1.0")
    assert door("verify", "-p", str(wheel), "--profile", "mini") == ExitCode.CHECK_FAILED


def test_an_index_that_does_not_answer_exits_4() -> None:
    assert door("status", "--index", "http://127.0.0.1:9") == ExitCode.INDEX


def test_ctrl_c_exits_130() -> None:
    @clean_errors
    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(Exit) as done:
        interrupted()
    assert done.value.code == ExitCode.INTERRUPTED
