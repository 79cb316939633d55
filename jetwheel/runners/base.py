"""What every runner shares: the step script, the log, and how a failure is reported."""

from __future__ import annotations

import collections
import contextlib
import os
import re
import shlex
import signal
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Protocol

from jetwheel.errors import BuildError, OutOfMemory
from jetwheel.model.step import BuildStep
from jetwheel.runners.ccache import SHELL_SETUP
from jetwheel.runners.sccache import SHELL_SETUP as SCCACHE_SETUP

MARK = "::jetwheel-command "
DONE = ".jetwheel-done"  # in the work directory: the commands of the step that finished
ENV_FILE = ".jetwheel-env"  # in the work directory: this attempt's variables (a retry may change MAX_JOBS)
# what a compiler or the shell prints when the kernel's OOM killer (or a cgroup limit) took it
_KILLED = re.compile(
    r"Killed signal terminated program"  # gcc/g++: cc1plus killed
    r"|died due to signal 9"  # nvcc: cicc or ptxas killed
    r"|terminated by signal 9|signal 9 \[Killed\]"
    r"|line \d+: +\d+ Killed"  # bash's report of a killed child
    r"|^Killed$|[Oo]ut of memory"
)


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
    """One bash script for the whole step; markers name each command so a failure can be attributed.

    Run again in the same work directory, it skips the commands that finished (the env, installs,
    patches) and reruns the one that failed, whose build system continues from its build directory.
    Shell state (`export ...`) is set on every run."""
    lines = [
        "set -euo pipefail",
        f'if [ -f "$JW_WORK/{ENV_FILE}" ]; then . "$JW_WORK/{ENV_FILE}"; fi',
        SCCACHE_SETUP.rstrip("\n"),  # sccache first: where it serves, it unsets CCACHE_DIR
        SHELL_SETUP.rstrip("\n"),
        f'jw_todo() {{ ! grep -qx "$1" "$JW_WORK/{DONE}" 2>/dev/null; }}',
    ]
    for i, cmd in enumerate(step.commands, 1):
        marker = f"echo {shlex.quote(f'{MARK}{i}/{len(step.commands)}: {cmd}')}"
        if cmd.startswith("export "):
            lines += [marker, cmd]
        else:
            lines += [f"if jw_todo {i}; then", marker, cmd, f'echo {i} >> "$JW_WORK/{DONE}"', "fi"]
    return "\n".join(lines) + "\n"


def env_file(env: dict[str, str]) -> str:
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(env.items()))


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
        # in its own session, the whole build goes (compilers, ninja), not only the shell
        if popen.get("start_new_session"):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.kill()
        proc.wait()
        raise


def memory_note() -> str:
    """This host's memory as an OOM report states it: "64 GB RAM, 0 swap"."""
    with open("/proc/meminfo", encoding="ascii") as f:
        kb = {k: int(v.split()[0]) for k, _, v in (line.partition(":") for line in f)}
    swap = kb.get("SwapTotal", 0) / 2**20
    return f"{kb['MemTotal'] / 2**20:.0f} GB RAM, {f'{swap:.0f} GB' if swap else '0'} swap"


def failed(step: BuildStep, code: int, log: StepLog, oom_killed: bool = False, memory: str = "") -> BuildError:
    """The error for a failed step script: OutOfMemory when the kernel killed a process of it (the
    engine's OOMKilled, a compiler's "Killed signal", bash's report of a killed child, or the script
    itself SIGKILLed on this host), else BuildError with the last line."""
    last = [line for line in log.tail if not line.startswith(MARK)][-1:] or [""]
    where = log.command or "the step script"
    # pip and ninja print a dozen lines after the compiler's: the whole tail is searched
    if oom_killed or code == -signal.SIGKILL or any(_KILLED.search(line) for line in log.tail):
        jobs = step.env.get("MAX_JOBS", "?")
        return OutOfMemory(
            f"{step.name}: killed for memory with MAX_JOBS={jobs}; {memory or memory_note()} "
            f"(in command {where}; full log: {log.path})",
            jobs=int(jobs) if jobs.isdigit() else 0,
        )
    return BuildError(
        f"{step.name}: command {where} failed (exit {code}): {last[0].strip()[:200]} (full log: {log.path})"
    )


class Runner(Protocol):
    name: str

    def run(self, step: BuildStep, workdir: Path, index_url: str, log: StepLog) -> None:
        """Run the step's commands with $JW_WORK holding src/, patches/; leave the wheel in out/.
        Called again with the same work directory after a failure, it continues where it stopped."""

    def probe_argv(self, image: str) -> list[str]:
        """argv that runs a bash command (appended) where this runner builds: for preflight."""

    def discard(self, step: BuildStep) -> None:
        """Drop what the runner kept to resume `step` (a failed container); the step succeeded."""
