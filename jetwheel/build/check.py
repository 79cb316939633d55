"""One preflight check's outcome: what was checked, whether it passed, and the fix of a failure;
and the lines a list of them prints as."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    check: str  # what was checked: "vllm: source", "engine", "image jetwheel/builder:r36.4.0-py3.12"
    ok: bool
    detail: str
    fix: str = ""  # what to do about a failure


def render(checks: Iterable[Check]) -> str:
    """One line per check: `ok` or `FAIL`, what, detail, and the fix of a failure."""
    return "\n".join(
        f"{'  ok' if c.ok else 'FAIL'}  {c.check}: {c.detail}" + (f"  -> fix: {c.fix}" if c.fix else "") for c in checks
    )


def failures(checks: Iterable[Check]) -> list[Check]:
    return [c for c in checks if not c.ok]
