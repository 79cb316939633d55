"""Show a build's progress: a live view on a terminal, one plain line per event otherwise (CI, logs)."""

from __future__ import annotations

import sys
import time
from collections import deque
from typing import TextIO

from rich.markup import escape
from rich.table import Table

from .engine import Event, Listener


class PlainProgress:
    """One line per step event; build output stays in the per-step log file."""

    def __init__(self, out: TextIO = sys.stderr) -> None:
        self.out = out
        self.started: dict[str, float] = {}

    def __call__(self, e: Event) -> None:
        if e.kind == "line" or (e.kind == "bytes" and e.done < e.size):
            return  # build output is in the step's log; a transfer is reported once, when complete
        if e.kind == "start":
            self.started[e.step] = time.monotonic()
        took = (
            f" ({time.monotonic() - self.started[e.step]:.1f}s)"
            if e.step in self.started and e.kind in ("published", "failed")
            else ""
        )
        where = (f"{e.engine}: " if e.engine else "") + (f"[{e.index}/{e.total}] {e.step} " if e.step else "")
        if e.kind == "bytes":
            print(f"jetwheel: {where}{e.message}: {e.size / 1e3:,.1f} kB", file=self.out, flush=True)
            return
        print(f"jetwheel: {where}{e.kind}: {e.message}{took}", file=self.out, flush=True)


class LiveProgress:
    """A rich live view: every step with its state and time, and the running step's last lines;
    on several engines, one row per engine (its step, time, last line) above the steps."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(stderr=True)
        self.live = Live(console=self.console, refresh_per_second=4, transient=False)
        self.steps: dict[str, list[str]] = {}
        self.order: list[str] = []
        self.started: dict[str, float] = {}
        self.lines: deque[str] = deque(maxlen=6)
        self.transfer = ""  # the last upload/download, as a bar
        self.total = 0
        self.engines: dict[str, list[str]] = {}  # engine -> [state, step, last line]
        self.engine_started: dict[str, float] = {}

    def _render(self) -> Table:
        t = Table.grid(padding=(0, 2))
        for name, (state, step, line) in self.engines.items():
            secs = f"{time.monotonic() - self.engine_started[name]:.0f}s" if state == "running" else ""
            t.add_row(f"[cyan]{escape(name)}[/]", f"{state} {step}".strip(), secs, "[dim]" + escape(line[:80]) + "[/]")
        for name in self.order:
            state, detail = self.steps[name]
            secs = (
                f"{time.monotonic() - self.started[name]:.0f}s" if name in self.started and state == "running" else ""
            )
            t.add_row(f"[bold]{name}[/]", state, secs, detail)
        if self.transfer:
            t.add_row("", escape(self.transfer), "", "")
        for line in self.lines:
            t.add_row("", "[dim]" + escape(line[:120]) + "[/]", "", "")
        return t

    def __call__(self, e: Event) -> None:
        if e.kind == "plan":
            self.total = e.total
            self.live.start()
        if e.step and e.step not in self.steps:
            self.order.append(e.step)
            self.steps[e.step] = ["waiting", ""]
        if e.engine:
            self._engine(e)
        if e.kind == "line":
            self.lines.append(e.message)
        elif e.kind == "bytes":
            self.transfer = _bar(e.message, e.done, e.size)
        elif e.kind == "start":
            self.started[e.step] = time.monotonic()
            self.steps[e.step] = ["running", e.message]
            self.lines.clear()
        elif e.kind in ("cached", "published", "failed", "verified"):
            self.steps[e.step] = [e.kind, e.message]
        elif e.kind == "lost":
            self.steps[e.step] = ["waiting", "engine lost: runs again elsewhere"]
        self.live.update(self._render())
        if e.kind == "failed" or (e.kind in ("published", "cached") and e.index == self.total):
            self.live.stop()

    def _engine(self, e: Event) -> None:
        row = self.engines.setdefault(e.engine, ["idle", "", ""])
        if e.kind == "engine":
            row[2] = e.message
        elif e.kind == "start":
            self.engine_started[e.engine] = time.monotonic()
            row[:] = ["running", e.step, ""]
        elif e.kind == "line":
            row[2] = e.message
        elif e.kind == "lost":
            row[:] = ["lost", e.step, e.message]
        elif e.kind in ("published", "cached", "failed"):
            row[:] = ["idle" if e.kind != "failed" else "failed", "" if e.kind != "failed" else e.step, ""]


def _bar(what: str, done: int, size: int, width: int = 24) -> str:
    filled = int(width * done / size) if size else width
    return f"{what} [{'#' * filled}{'.' * (width - filled)}] {done / 1e3:,.0f} / {size / 1e3:,.0f} kB"


def make_listener(stream: TextIO = sys.stderr) -> Listener:
    return LiveProgress() if stream.isatty() else PlainProgress(stream)
