"""The bottom layer's pip helpers: a pip that sees only the index it is given, choosing wheels
for a target rather than for this machine."""

from __future__ import annotations

import os

from .target import Target


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
