"""One build of a step at a time per work root. Two runs of the same step on one machine would share
one work directory (a resumed run skipping commands the other finished) or delete each other's (a
fresh start removes the step's other kept directories): the second run is refused at once, naming
the first."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from jetwheel.errors import BuildError


def hold_step(work_root: Path, step: str) -> IO[str]:
    """The step's lock, held until the returned file is closed; BuildError if another run holds it."""
    work_root.mkdir(parents=True, exist_ok=True)
    f = open(work_root / f".{step}.lock", "a+")  # noqa: SIM115 - closed by the caller, which holds it
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise BuildError(
            f"{step}: another build of it is running on this machine ({holder}, work root {work_root}); "
            "wait for it to end"
        ) from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()}")
    f.flush()
    return f
