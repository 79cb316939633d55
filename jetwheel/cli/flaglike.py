"""Positional values that look like options. Invoke's parser hands a task's missing positional
argument the next token whatever it is (`jetwheel index.export --help` exported into ./--help).
Such a `--help`, or `-h`, asks for the task's help: a task with an -h of its own never gets `-h` as a
value, the parser takes it as that option first. Any other value that starts with `-` is a mistyped
option: one line, a usage exit, and the task does not run."""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable, Iterable
from typing import NoReturn, ParamSpec, TypeVar

from invoke.exceptions import Exit

from jetwheel.errors import ExitCode

P = ParamSpec("P")
R = TypeVar("R")

HELP = frozenset({"--help", "-h"})


def stray(values: Iterable[object]) -> str | None:
    """The first value that starts with `-`, if any."""
    return next((v for v in values if isinstance(v, str) and v.startswith("-")), None)


def answer(task: str, value: str, print_help: Callable[[str], None]) -> NoReturn:
    """Print the task's help for a help flag, else refuse the value; either way the task does not run."""
    if value in HELP:
        print_help(task)
        raise Exit
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
            answer(_task_name(wrapper), value, _invoke_task_help)
        return fn(*args, **kwargs)

    return wrapper


def _task_name(body: Callable[..., object]) -> str:
    from jetwheel.cli import namespace

    return next(name for name in namespace.task_names if namespace[name].body is body)


def _invoke_task_help(task: str) -> None:
    """`inv --help TASK`'s text: Invoke's program on a copy of the collection (as its loader copies
    tasks.py's), under Invoke's name."""
    from invoke.program import Program

    from jetwheel.cli import namespace

    Program(namespace=copy.deepcopy(namespace), binary="inv[oke]").run(["inv", "--help", task], exit=False)
