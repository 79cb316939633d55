"""Real upstream wheels of the pinned stack, downloaded from PyPI once and cached between runs
(~/.cache/jetwheel/real-wheels, or $JETWHEEL_REAL_WHEELS): the test data for `pytest -m real`."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

from jetwheel.pipcmd import clean_pip_env, target_args
from jetwheel.target import Target

CACHE = Path(os.environ.get("JETWHEEL_REAL_WHEELS", Path.home() / ".cache" / "jetwheel" / "real-wheels"))
PYPI = "https://pypi.org/simple/"


def real_wheel(name: str, version: str, python: str = "3.12", arch: str = "x86_64") -> Path:
    """The PyPI wheel of name==version for CPython `python` on manylinux `arch` (cached)."""
    found = _cached(name, version, python, arch)
    if found is not None:
        return found
    CACHE.mkdir(parents=True, exist_ok=True)
    # pip writes the file in place: a second caller (tests/prefetch.py's thread) must not read it half-written
    with open(CACHE / f".{name}-{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = _cached(name, version, python, arch)
        if found is not None:
            return found
        target = Target(python, f"linux_{arch}", "", "", glibc="2.28")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(CACHE), "--index-url", PYPI]
        done = subprocess.run(
            [*cmd, *target_args(target), f"{name}=={version}"],
            capture_output=True,
            text=True,
            env=clean_pip_env(os.environ),
        )
        if done.returncode != 0:
            raise RuntimeError(f"pip download {name}=={version} ({python}, {arch}) failed: {done.stderr[-400:]}")
        found = _cached(name, version, python, arch)
    if found is None:
        raise RuntimeError(f"pip download {name}=={version} ({python}, {arch}) left no matching wheel in {CACHE}")
    return found


def _cached(name: str, version: str, python: str, arch: str) -> Path | None:
    for path in sorted(CACHE.glob(f"{name.replace('-', '_')}-{version}-*.whl")):
        tags = path.name[:-4].split("-")[-3:]
        if arch in tags[2] and tags[1] in (f"cp{python.replace('.', '')}", "abi3"):
            return path
    return None
