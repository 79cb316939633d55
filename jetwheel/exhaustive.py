"""`assert_never`, for matches over a closed set (a `Literal`): mypy refuses a match that leaves a
member unhandled, and an unhandled value that slips through at run time raises. `typing` has it
from Python 3.11; jetwheel runs on 3.10 too."""

from __future__ import annotations

import sys
from typing import NoReturn

if sys.version_info >= (3, 11):
    from typing import assert_never
else:  # pragma: no cover

    def assert_never(value: NoReturn) -> NoReturn:
        raise AssertionError(f"unhandled value {value!r}")


__all__ = ["assert_never"]
