"""One exception hierarchy, and the exit codes it maps to. Only the edges (cli, HTTP handlers) turn
these into messages."""

from __future__ import annotations

from enum import IntEnum
from typing import ClassVar


class ExitCode(IntEnum):
    """What a script sees; the README's table. One mapping, at the door (cli.edge.clean_errors)."""

    OK = 0
    CHECK_FAILED = 1  # verify, preflight or triton.check found a problem
    USAGE = 2  # bad arguments, recipe, profile or config
    BUILD_FAILED = 3  # a build step failed; nothing of it was published
    INDEX = 4  # the index was unreachable or refused
    NOT_CHECKED = 5  # a check could not run at all (an engine or image that does not answer)
    INTERRUPTED = 130


class JetwheelError(Exception):
    """Base of every error jetwheel reports as one clean line. Each kind says its exit code (`code`)
    and the word the door puts before its message (`lead`). A new kind directly below this one must
    state its code: there is no default that could hide it (the base's own code is for plain
    `JetwheelError`s, an argument or input that names nothing usable); a refinement of a kind
    (`VerifyFailed` of `BuildError`) inherits its kind's code unless it states another."""

    code: ClassVar[ExitCode] = ExitCode.USAGE
    lead: ClassVar[str] = "error"

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if not any("code" in vars(k) for k in cls.__mro__ if k is not JetwheelError):
            raise TypeError(f"{cls.__qualname__}: a new kind of error states its exit code (code = ExitCode.…)")


class CheckFailed(JetwheelError):
    """A check that runs before the work (preflight) found a problem; nothing was done."""

    code = ExitCode.CHECK_FAILED


class RecipeError(JetwheelError):
    """A recipe or profile file is wrong; the message names file, key and fix."""

    code = ExitCode.USAGE


class UsageError(JetwheelError):
    """An argument names nothing usable (a runner, a missing option); the message names the value
    and what would do."""

    code = ExitCode.USAGE


class PlanError(JetwheelError):
    """The requested build cannot be planned (unknown package, cycle, ...)."""

    code = ExitCode.USAGE


class BuildError(JetwheelError):
    """A build step failed; nothing was published."""

    code = ExitCode.BUILD_FAILED


class VerifyFailed(BuildError):
    """A wheel failed verification and was not published."""

    code = ExitCode.CHECK_FAILED


class StoreError(JetwheelError):
    """The index store refused or could not complete an operation."""

    code = ExitCode.INDEX

    def __init__(self, message: str) -> None:  # one line, no HTTP status: the kind says it
        super().__init__(message)


class UploadRejected(StoreError):
    """The store refused a file or a request: as given, it is not valid. The kinds below say why
    else; the index's handler turns each kind into its HTTP status (index/server/guard.py, STATUS), and
    nothing below the handler names one."""


class AlreadyExists(UploadRejected):
    """The file is in the store already, and the store does not overwrite it."""


class TooLarge(UploadRejected):
    """The file, or something in it, is over a limit of the store's."""


class DiskFull(UploadRejected):
    """The store's disk is full: nothing was stored, a retry succeeds once there is space."""


class RefusedByPolicy(UploadRejected):
    """Valid, but this user may not do it (a name the recipes own, published by a mere uploader)."""


class Abandoned(UploadRejected):
    """The uploader hung up (or the server is stopping) while the upload was checked: nothing was stored."""


class NotFound(StoreError):
    """The store holds no such file."""


class Unavailable(StoreError):
    """It cannot be decided now (the upstream index did not answer): nothing was stored, and a retry
    may succeed."""


class PublishError(JetwheelError):
    """Handing a wheel to the index failed."""

    code = ExitCode.INDEX


class RunnerError(JetwheelError):
    """A runner could not start (no container engine, missing image, ...)."""

    code = ExitCode.BUILD_FAILED


class SourceError(BuildError):
    """A build's source could not be had, or does not match the recipe's pin."""


class OutOfMemory(BuildError):
    """The kernel killed a process of a build step for memory; ``jobs`` is the MAX_JOBS it ran with."""

    def __init__(self, message: str, jobs: int = 0) -> None:
        super().__init__(message)
        self.jobs = jobs


class EngineLost(RunnerError):
    """The engine running a step went away mid-step (connection lost: ``gone``; or its container was
    killed): only that attempt is lost, the step can run again elsewhere. Nothing was published."""

    def __init__(self, message: str, gone: bool) -> None:
        super().__init__(message)
        self.gone = gone


def exit_code(error: JetwheelError) -> ExitCode:
    """The exit code of an error that reached the door: its kind's."""
    return error.code
