"""Where typed errors become one clean line and an exit code, and documents become text."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

from invoke.exceptions import Exit

from ..errors import ExitCode, JetwheelError, exit_code

F = TypeVar("F", bound=Callable[..., Any])


def clean_errors(fn: F) -> F:
    """Typed errors and Ctrl-C become one line on stderr and a non-zero exit, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except JetwheelError as e:
            raise Exit(f"jetwheel: error: {' '.join(str(e).split())}", code=exit_code(e)) from None
        except KeyboardInterrupt:
            raise Exit("jetwheel: interrupted", code=ExitCode.INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]


def dumps(doc: object) -> str:
    return json.dumps(doc, indent=2, sort_keys=False)
