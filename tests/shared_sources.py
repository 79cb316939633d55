"""Where this machine keeps the real upstream sources GitHub would serve (`shared/sources`, its
README names each archive's sha256 and commit): $JETWHEEL_SHARED_SOURCES; else `shared/sources`
beside this checkout; else beside the checkout this one was cloned from (a CI clone made elsewhere,
e.g. under /tmp, keeps its origin's path)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _candidates() -> list[Path]:
    if os.environ.get("JETWHEEL_SHARED_SOURCES"):
        return [Path(os.environ["JETWHEEL_SHARED_SOURCES"])]
    found = [ROOT.parent / "shared" / "sources"]
    origin = subprocess.run(["git", "-C", str(ROOT), "remote", "get-url", "origin"], capture_output=True, text=True)
    url = origin.stdout.strip().removeprefix("file://")
    if origin.returncode == 0 and url.startswith("/"):
        found.append(Path(url).resolve().parent / "shared" / "sources")
    return found


def shared_sources() -> Path:
    """The first candidate that exists (the first one, to be named in the failure, when none does)."""
    candidates = _candidates()
    return next((c for c in candidates if c.is_dir()), candidates[0])


SHARED = shared_sources()
