"""Show a build's progress: a live view on a terminal, one plain line per event otherwise (CI, logs)."""

from __future__ import annotations

import re
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TextIO

from rich.markup import escape
from rich.table import Table

from jetwheel.build.engine import Event, Listener
from jetwheel.exhaustive import assert_never

if TYPE_CHECKING:
    from rich.console import Console

# pip -v indents the backend's lines
_COUNTED = re.compile(r"^\s*\[(\d+)/(\d+)\] ")  # ninja, and CMake's ninja generator
_PERCENT = re.compile(r"^\s*\[\s*(\d+)%\] ")  # CMake's Makefile generator
_EXTENSION = re.compile(r"^\s*building '([^']+)' extension")  # setuptools' build_ext


@dataclass
class CompileProgress:
    """A long compile's progress, from the build system's own lines: ninja's `[N/M]`, CMake's
    `[ NN%]`, setuptools' `building 'x' extension`. Rate and ETA count from the first line seen of
    the current build system run (a resumed ninja starts its count again with the work left)."""

    done: int = 0
    total: int = 0  # 0 when only extensions are counted
    percent: bool = False  # CMake's Makefiles print a percentage, not counts
    extensions: int = 0
    extension: str = ""
    since: tuple[int, float] = (0, 0.0)  # (done, time) the rate counts from

    def feed(self, line: str, now: float) -> bool:
        """Take one log line; True when it moved the progress."""
        if m := _COUNTED.match(line):
            done, total, self.percent = int(m[1]), int(m[2]), False
        elif m := _PERCENT.match(line):
            done, total, self.percent = int(m[1]), 100, True
        elif m := _EXTENSION.match(line):
            self.extensions += 1
            self.extension = m[1]
            return True
        else:
            return False
        if total != self.total or done < self.done:  # another build system run
            self.since = (done, now)
        self.done, self.total = done, total
        return True

    @property
    def fraction(self) -> float | None:
        return self.done / self.total if self.total else None

    def rate(self, now: float) -> float:
        """Steps a second since the run's first line (0 until time has passed)."""
        d0, t0 = self.since
        return (self.done - d0) / (now - t0) if now > t0 and self.done > d0 else 0.0

    def eta(self, now: float) -> float | None:
        rate = self.rate(now)
        return (self.total - self.done) / rate if rate and self.total else None

    def describe(self, now: float) -> str:
        if self.fraction is None:
            return f"extension {self.extensions}: {self.extension}" if self.extensions else ""
        parts = [f"{self.fraction:.0%}" if self.percent else f"{self.fraction:.0%} ({self.done}/{self.total})"]
        if self.rate(now):
            parts.append(f"{self.rate(now):.1f}/s")
        eta = self.eta(now)
        if eta is not None:
            parts.append(f"ETA {_duration(eta)}")
        return ", ".join(parts)


def _duration(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class PlainProgress:
    """One line per step event, and one per 10 % of a compile; build output stays in the step's log."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stderr  # looked up now: a default bound at import outlives a replaced stderr
        self.started: dict[str, float] = {}
        self.compile = CompileProgress()
        self.decile = -1

    def _compile_line(self, e: Event) -> None:
        now = time.monotonic()
        if not self.compile.feed(e.message, now):
            return
        fraction = self.compile.fraction
        if fraction is None:
            print(f"jetwheel: [{e.index}/{e.total}] {e.step} compile: {self.compile.describe(now)}", file=self.out)
            return
        decile = int(fraction * 10)
        if self.compile.since[1] == now:
            self.decile = -1  # a new run of the build system
        if decile > self.decile:
            self.decile = decile
            print(
                f"jetwheel: [{e.index}/{e.total}] {e.step} compile {self.compile.describe(now)}",
                file=self.out,
                flush=True,
            )

    def __call__(self, e: Event) -> None:
        match e.kind:
            case "line":
                self._compile_line(e)
            case "bytes":
                if e.done >= e.size:  # a transfer is reported once, when complete
                    self._print(e, f"{e.message}: {e.size / 1e3:,.1f} kB")
            case "start":
                self.started[e.step] = time.monotonic()
                self.compile, self.decile = CompileProgress(), -1
                self._print(e, f"{e.kind}: {e.message}")
            case "published" | "failed":
                took = f" ({time.monotonic() - self.started[e.step]:.1f}s)" if e.step in self.started else ""
                self._print(e, f"{e.kind}: {e.message}{took}")
            case "plan" | "engine" | "resume" | "oom" | "verified" | "cached" | "lost":
                self._print(e, f"{e.kind}: {e.message}")
            case _:
                assert_never(e.kind)

    def _print(self, e: Event, text: str) -> None:
        where = (f"{e.engine}: " if e.engine else "") + (f"[{e.index}/{e.total}] {e.step} " if e.step else "")
        print(f"jetwheel: {where}{text}", file=self.out, flush=True)


# a step's row: waiting (for its dependencies, or an engine), then as its last event says
StepState = Literal["waiting", "running", "resuming", "verified", "cached", "published", "failed"]
EngineState = Literal["idle", "running", "lost", "failed"]


@dataclass
class _EngineRow:
    state: EngineState = "idle"
    step: str = ""
    line: str = ""  # its step's last line of output, or what the engine said about itself


class LiveProgress:
    """A rich live view: every step with its state and time, and the running step's last lines;
    on several engines, one row per engine (its step, time, last line) above the steps."""

    def __init__(self, console: Console | None = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = console or Console(stderr=True)
        self.live = Live(console=self.console, refresh_per_second=4, transient=False)
        self.steps: dict[str, tuple[StepState, str]] = {}
        self.order: list[str] = []
        self.started: dict[str, float] = {}
        self.lines: deque[str] = deque(maxlen=6)
        self.transfer = ""  # the last upload/download, as a bar
        self.total = 0
        self.compile = CompileProgress()
        self.engines: dict[str, _EngineRow] = {}
        self.engine_started: dict[str, float] = {}

    def _render(self) -> Table:
        t = Table.grid(padding=(0, 2))
        now = time.monotonic()
        for name, row in self.engines.items():
            secs = f"{now - self.engine_started[name]:.0f}s" if row.state == "running" else ""
            t.add_row(
                f"[cyan]{escape(name)}[/]",
                f"{row.state} {row.step}".strip(),
                secs,
                "[dim]" + escape(row.line[:80]) + "[/]",
            )
        for name in self.order:
            state, detail = self.steps[name]
            running = name in self.started and state in ("running", "resuming")
            secs = f"{now - self.started[name]:.0f}s" if running else ""
            if running and self.compile.describe(now):
                fraction = self.compile.fraction
                gauge = escape(_gauge(fraction)) if fraction is not None else ""
                detail = f"{gauge} {escape(self.compile.describe(now))}".strip()
            t.add_row(f"[bold]{name}[/]", state, secs, detail)
        if self.transfer:
            t.add_row("", escape(self.transfer), "", "")
        for line in self.lines:
            t.add_row("", "[dim]" + escape(line[:120]) + "[/]", "", "")
        return t

    def __call__(self, e: Event) -> None:
        if e.step and e.step not in self.steps:
            self.order.append(e.step)
            self.steps[e.step] = ("waiting", "")
        if e.engine:
            self._engine(e)
        self._step(e)
        self.live.update(self._render())
        if e.kind == "failed" or (e.kind in ("published", "cached") and e.index == self.total):
            self.live.stop()

    def _step(self, e: Event) -> None:
        match e.kind:
            case "plan":
                self.total = e.total
                self.live.start()
            case "line":
                self.lines.append(e.message)
                self.compile.feed(e.message, time.monotonic())
            case "resume":
                self.steps[e.step] = ("resuming", e.message)
            case "oom":
                self.lines.append(e.message)
            case "bytes":
                self.transfer = _bar(e.message, e.done, e.size)
            case "start":
                self.started[e.step] = time.monotonic()
                self.steps[e.step] = ("running", e.message)
                self.lines.clear()
                self.compile = CompileProgress()
            case "cached" | "published" | "failed" | "verified":
                self.steps[e.step] = (e.kind, e.message)
            case "lost":
                self.steps[e.step] = ("waiting", "engine lost: runs again elsewhere")
            case "engine":
                pass  # the engine's own row (_engine)
            case _:
                assert_never(e.kind)

    def _engine(self, e: Event) -> None:
        row = self.engines.setdefault(e.engine, _EngineRow())
        match e.kind:
            case "engine" | "line":
                row.line = e.message
            case "start":
                self.engine_started[e.engine] = time.monotonic()
                self.engines[e.engine] = _EngineRow("running", e.step)
            case "lost":
                self.engines[e.engine] = _EngineRow("lost", e.step, e.message)
            case "published" | "cached":
                self.engines[e.engine] = _EngineRow()
            case "failed":
                self.engines[e.engine] = _EngineRow("failed", e.step)
            case "plan" | "resume" | "oom" | "bytes" | "verified":
                pass  # the engine's row shows which step it runs, not the step's detail
            case _:
                assert_never(e.kind)


def _gauge(fraction: float, width: int = 24) -> str:
    filled = int(width * min(fraction, 1.0))
    return f"[{'#' * filled}{'.' * (width - filled)}]"


def _bar(what: str, done: int, size: int) -> str:
    return f"{what} {_gauge(done / size if size else 1.0)} {done / 1e3:,.0f} / {size / 1e3:,.0f} kB"


def make_listener(stream: TextIO) -> Listener:
    return LiveProgress() if stream.isatty() else PlainProgress(stream)
