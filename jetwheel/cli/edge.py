"""Where typed errors become one clean line and an exit code, and documents become text."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from invoke.exceptions import Exit

from jetwheel.cli.flaglike import refuse_strays
from jetwheel.errors import ExitCode, JetwheelError, exit_code

P = ParamSpec("P")
R = TypeVar("R")


def clean_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Typed errors and Ctrl-C become one line on stderr and a non-zero exit, never a traceback. The
    code is the error's kind's (errors.JetwheelError.code): the one mapping, with no fallback. A
    positional argument that looks like an option never reaches the task (flaglike)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except JetwheelError as e:
            raise Exit(f"jetwheel: {e.lead}: {' '.join(str(e).split())}", code=exit_code(e)) from None
        except KeyboardInterrupt:
            raise Exit("jetwheel: interrupted", code=ExitCode.INTERRUPTED) from None

    return refuse_strays(wrapper)


def dumps(doc: object) -> str:
    return json.dumps(doc, indent=2, sort_keys=False)
