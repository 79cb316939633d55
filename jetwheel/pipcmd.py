"""The bottom layer's pip helpers: a pip that sees only the index it is given, choosing wheels
for a target rather than for this machine."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from jetwheel.target import Target


def clean_pip_env() -> dict[str, str]:
    """The environment for a pip that must see only the index it is given: no pip.conf, no
    constraints, no extra index or find-links from the host."""
    env = dict(os.environ, PIP_CONFIG_FILE=os.devnull)
    for k in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CONSTRAINT"):
        env.pop(k, None)
    return env


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
