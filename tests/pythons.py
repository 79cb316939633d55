"""The CPython 3.12 the cp312 tests run (pyenv's 3.12.1 on these machines), as a path."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


def python312() -> str:
    """pyenv's 3.12 under $PYENV_ROOT (pyenv's own variable; ~/.pyenv by default), else `python3.12`
    on PATH; found without setting PYENV_VERSION in the environment every test shares."""
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    pyenv = sorted((root / "versions").glob("3.12*/bin/python3.12"))
    for exe in (*map(str, pyenv), shutil.which("python3.12")):
        if exe and subprocess.run([exe, "-c", ""], capture_output=True).returncode == 0:
            return exe
    raise RuntimeError("the cp312 tests need a CPython 3.12 (python3.12, or pyenv's under $PYENV_ROOT)")
