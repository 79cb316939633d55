"""The exit-code contract (README, "Exit codes"): a script can tell a failed check from a bad
argument, a failed build and an index that did not answer. Through the real door, in-process."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import door
from invoke.exceptions import Exit
from wheelmaker import make_wheel

from jetwheel.cli import clean_errors
from jetwheel.errors import (
    BuildError,
    CheckFailed,
    ExitCode,
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
