"""Both views show every kind of progress event: a kind added to EventKind that a view does not
handle fails here at run time, as it fails mypy through the views' `assert_never`."""

from __future__ import annotations

import io
from typing import get_args

import pytest
from rich.console import Console

from jetwheel.build.engine import Event, EventKind
from jetwheel.build.progress import LiveProgress, PlainProgress

KINDS: tuple[EventKind, ...] = get_args(EventKind)


def event(kind: EventKind) -> Event:
    """The event as its producer sends it: plan and engine name no step."""
    step = "" if kind in ("plan", "engine") else "mini-torch"
    return Event(kind, step, 1 if step else 0, 2, f"the {kind} message", done=5, size=5, engine="jetson1")


def test_every_kind_is_listed_once() -> None:
    assert len(set(KINDS)) == len(KINDS) == 12


@pytest.mark.parametrize("kind", KINDS)
def test_plain_view_prints_every_kind_but_raw_build_output(kind: EventKind) -> None:
    out = io.StringIO()
    PlainProgress(out)(event(kind))
    where = "jetson1: " if kind in ("plan", "engine") else "jetson1: [1/2] mini-torch "
    expected = {
        "line": [],  # build output stays in the step's log; only compile progress is printed
        "bytes": [f"jetwheel: {where}the bytes message: 0.0 kB"],
    }.get(kind, [f"jetwheel: {where}{kind}: the {kind} message"])
    assert out.getvalue().splitlines() == expected


@pytest.mark.parametrize("kind", KINDS)
def test_live_view_shows_every_kind(kind: EventKind) -> None:
    view = LiveProgress(Console(file=io.StringIO(), width=200))
    if kind != "plan":
        view(Event("plan", total=2, message="mini-llm for fleet"))
    view(event(kind))
    view.live.stop()
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(view._render())
    shown = console.export_text()
    if kind == "plan":  # the plan sizes the view; its message is the command's own line
        assert view.total == 2
    else:
        assert "the " + kind + " message" in shown
