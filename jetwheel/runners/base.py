"""What every runner shares: the step script, the log, and how a failure is reported."""

from __future__ import annotations

import collections
import shlex
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Protocol

from ..errors import BuildError
from ..plan import BuildStep

MARK = "::jetwheel-command "


class StepLog:
    """Keeps the whole log on disk and the last lines in memory; forwards each line to a listener."""

    def __init__(self, path: Path, on_line: Callable[[str], None] | None = None, keep: int = 40) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # open for the whole step; close() is called by the engine when the step ends
        self._file: IO[str] = open(path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115
        self.tail: collections.deque[str] = collections.deque(maxlen=keep)
        self.on_line = on_line
        self.command = ""  # the command running now, from the script's markers

    def write(self, line: str) -> None:
        line = line.rstrip("\n")
        if line.startswith(MARK):
            self.command = line[len(MARK) :]
        self._file.write(line + "\n")
        self.tail.append(line)
        if self.on_line:
            self.on_line(line)

    def close(self) -> None:
        self._file.close()


def step_script(step: BuildStep) -> str:
    """One bash script for the whole step; markers name each command so a failure can be attributed."""
    lines = ["set -euo pipefail"]
    for i, cmd in enumerate(step.commands, 1):
        lines.append(f"echo {shlex.quote(f'{MARK}{i}/{len(step.commands)}: {cmd}')}")
        lines.append(cmd)
    return "\n".join(lines) + "\n"


def stream(argv: Sequence[str], log: StepLog, **popen: object) -> int:
    """Run a process, feeding its merged output to the log line by line; return its exit code."""
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1, **popen
    )  # type: ignore[call-overload]
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
        return int(proc.wait())
    except BaseException:
        proc.kill()
        proc.wait()
        raise


def failed(step: BuildStep, code: int, log: StepLog) -> BuildError:
    last = [line for line in log.tail if not line.startswith(MARK)][-1:] or [""]
    where = log.command or "the step script"
    return BuildError(
        f"{step.name}: command {where} failed (exit {code}): {last[0].strip()[:200]} (full log: {log.path})"
    )


class Runner(Protocol):
    name: str

    def run(self, step: BuildStep, workdir: Path, index_url: str, log: StepLog) -> None:
        """Run the step's commands with $JW_WORK holding src/, patches/; leave the wheel in out/."""
