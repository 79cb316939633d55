"""One exception hierarchy, and the exit codes it maps to. Only the edges (cli, HTTP handlers) turn
these into messages."""

from __future__ import annotations

from enum import IntEnum


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
    """Base of every error jetwheel reports as one clean line."""


class CheckFailed(JetwheelError):
    """A check that runs before the work (preflight) found a problem; nothing was done."""


class RecipeError(JetwheelError):
    """A recipe or profile file is wrong; the message names file, key and fix."""


class UsageError(JetwheelError):
    """An argument names nothing usable (a runner, a missing option); the message names the value
    and what would do."""


class PlanError(JetwheelError):
    """The requested build cannot be planned (unknown package, cycle, ...)."""


class BuildError(JetwheelError):
    """A build step failed; nothing was published."""


class VerifyFailed(BuildError):
    """A wheel failed verification and was not published."""


class StoreError(JetwheelError):
    """The index store refused or could not complete an operation."""


# The store's own refusals: what went wrong, in the store's words. The index server maps each to its
# HTTP answer in one place (index/server/guard.status_of); the store knows nothing of HTTP.
class NotFound(StoreError):
    """The store holds no such file."""


class Exists(StoreError):
    """A file of that name is stored already, and this change may not replace it."""


class TooLarge(StoreError):
    """Over the store's size limit."""


class DiskFull(StoreError):
    """No space to store it: nothing was stored, and a retry may succeed once there is."""


class Refused(StoreError):
    """The store's rules refuse the file: a digest that does not match, a bad name or content."""


class UploadRejected(StoreError):
    """An upload refused by the server; ``status`` is the HTTP status to answer with. (The store's
    validate.py still raises it too: it is to move to the domain errors above.)"""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class PublishError(JetwheelError):
    """Handing a wheel to the index failed."""


class RunnerError(JetwheelError):
    """A runner could not start (no container engine, missing image, ...)."""


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
    """The exit code of an error that reached the door; the most specific kind wins."""
    if isinstance(error, (VerifyFailed, CheckFailed)):
        return ExitCode.CHECK_FAILED
    if isinstance(error, (UsageError, RecipeError, PlanError)):
        return ExitCode.USAGE
    if isinstance(error, (BuildError, RunnerError)):
        return ExitCode.BUILD_FAILED
    if isinstance(error, (StoreError, PublishError)):
        return ExitCode.INDEX
    return ExitCode.USAGE  # the plain kind: an argument that names nothing usable
