"""Positional values that look like options. Invoke's parser hands a task's missing positional
argument the next token whatever it is: a value that starts with `-` is a mistyped option (one line,
a usage exit, and the task does not run). `--help` and `-h` never get here: cli.parsing reads them
as the task's help first."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import NoReturn, ParamSpec, TypeVar

from invoke.exceptions import Exit

from jetwheel.errors import ExitCode

P = ParamSpec("P")
R = TypeVar("R")


def stray(values: Iterable[object]) -> str | None:
    """The first value that starts with `-`, if any."""
    return next((v for v in values if isinstance(v, str) and v.startswith("-")), None)


def refuse(task: str, value: str) -> NoReturn:
    """The task does not run: VALUE is an option it does not have."""
    raise Exit(f"jetwheel: {task}: unknown option {value!r} (see --help {task})", code=ExitCode.USAGE)


def refuse_strays(fn: Callable[P, R]) -> Callable[P, R]:
    """The same answer when the task is called: Invoke's own program (`inv`, on tasks.py) passes a
    stray to the task, where the jetwheel door (cli.Door) answers before any task runs."""
    signature = inspect.signature(fn)
    positional = [p.name for p in list(signature.parameters.values())[1:] if p.default is p.empty]

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        bound = signature.bind_partial(*args, **kwargs).arguments
        value = stray(bound.get(name) for name in positional)
        if value is not None:
            refuse(_task_name(wrapper), value)
        return fn(*args, **kwargs)

    return wrapper


def _task_name(body: Callable[..., object]) -> str:
    from jetwheel.cli import namespace

    return next(name for name in namespace.task_names if namespace[name].body is body)
