"""`doctor`: examine an installed environment (this one, another interpreter, or one inside an
image) and say what fails there."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jetwheel.doctor import report, run
from jetwheel.workflow.context import context


@dataclass(frozen=True)
class Examined:
    scan: dict[str, Any]  # what the scan inside the environment found
    lines: list[report.Line]  # one per finding, with its fix

    @property
    def exit_code(self) -> int:
        return report.exit_code(self.lines)


def examine(  # params: one per flag of `doctor`
    python: str, image: str, image_python: str, engine: str, arch: str, driver: str, profile: str, facts: str
) -> Examined:
    """Scan the environment: `image`'s, else `python`'s, else this one's. --arch and --driver default
    to the profile's (with `profile`), else the GPU present. Raises run.CannotCheck when it cannot look."""
    ctx = context(profile=profile)
    if profile:
        target = ctx.profile.target()
        arch, driver = arch or target.cuda_arch, driver or target.cuda
    root = Path(facts) if facts else ctx.settings.facts
    if image:
        doc = run.image(image, engine, image_python, arch, driver, root)
    elif python:
        doc = run.python(python, arch, driver, root)
    else:
        doc = run.here(arch, driver, root)
    return Examined(doc, report.lines(doc))
