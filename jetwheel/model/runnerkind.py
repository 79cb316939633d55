"""The runners a build step may run on, as a closed set. The door parses `--runner` into one once;
below it every use matches on the kind exhaustively (`assert_never`), so a new runner is a type error
wherever it is not handled yet."""

from __future__ import annotations

from typing import Literal, get_args

from jetwheel.errors import UsageError

__all__ = ["RUNNER_KINDS", "RunnerKind", "parse_runner"]

# this host; a container (docker or podman, local or remote, emulated for another arch); the aarch64 cross compilers
RunnerKind = Literal["local", "docker", "cross"]
RUNNER_KINDS: tuple[RunnerKind, ...] = get_args(RunnerKind)


def parse_runner(value: str) -> RunnerKind:
    """`value` as a runner kind; a UsageError (exit 2) naming it and the choices otherwise."""
    for kind in RUNNER_KINDS:
        if value == kind:
            return kind
    raise UsageError(f"unknown runner {value!r}; use one of: {', '.join(RUNNER_KINDS)}")
