"""The bottom layer's pip helpers: a pip that sees only the index it is given, choosing wheels
for a target rather than for this machine."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from jetwheel.target import Target

# what of the host's pip set-up a pip that must see only the index it is given may not see
DROPPED = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CONSTRAINT")


def clean_pip_env(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` (the run's settings.environ) for a pip that must see only the index it is given:
    no pip.conf, no constraints, no extra index or find-links from the host."""
    env = dict(environ, PIP_CONFIG_FILE=os.devnull)
    for k in DROPPED:
        env.pop(k, None)
    return env


def clean_pip(cmd: list[str]) -> list[str]:
    """`cmd` (a pip command) run through env(1) with what clean_pip_env takes away taken away: for a
    part below the workflow, which holds no environment (settings are read once, at the workflow)
    and lets its child start from the process's own."""
    return ["env", *(a for k in DROPPED for a in ("-u", k)), f"PIP_CONFIG_FILE={os.devnull}", *cmd]


def target_args(target: Target) -> list[str]:
    """pip's options that make it choose wheels for the target instead of this machine: binary only,
    CPython `python`, its ABI, abi3 and pure wheels, and every platform tag the target accepts."""
    py = "cp" + target.python.replace(".", "")
    args = ["--only-binary=:all:", "--python-version", target.python, "--implementation", "cp"]
    for abi in (py, "abi3", "none"):
        args += ["--abi", abi]
    for t in target.platform_tags():
        args += ["--platform", t]
    return args


def dry_run_command(requirements: list[str], index_url: str, target: Target, report: Path) -> list[str]:
    """`pip install --dry-run --report` of `requirements` for the target, from `index_url` alone:
    what pip would install there, as JSON in `report` (no files fetched where PEP 658 metadata is)."""
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--ignore-installed",
        "--quiet",
        "--disable-pip-version-check",
        "--report",
        str(report),
        "--index-url",
        index_url,
        *target_args(target),
        *requirements,
    ]
