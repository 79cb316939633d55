"""A build step: everything a runner needs and nothing it has to decide (the plan makes them;
runners, the engine and the schedule take them without knowing recipes)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from jetwheel.model.runnerkind import RunnerKind
from jetwheel.model.stepsource import StepSource


@dataclass(frozen=True)
class BuildStep:
    name: str
    version: str  # the version the wheel will carry, local label included
    pin: str  # the profile's pin (what other wheels require)
    recipe: str  # path of the recipe file
    runner: RunnerKind
    image: str  # container image, or "host"
    env: Mapping[str, str]
    commands: tuple[str, ...]
    deps: tuple[str, ...]  # canonical names of the recipes installed from the index first
    patches: tuple[str, ...]
    source: StepSource
    wheel: str  # the expected repaired wheel filename
    cache_key: str
    # canonical names of the steps that must be published first though nothing of theirs is
    # installed (the recipe's run_deps in the plan): verify resolves the wheel's requirements
    after: tuple[str, ...] = ()

    @property
    def waits_for(self) -> frozenset[str]:
        """The steps published before this one starts: what it installs and what it requires."""
        return frozenset((*self.deps, *self.after))

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "source": self.source.to_json()}
