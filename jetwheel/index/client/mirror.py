"""Pull the dependencies jetwheel does not build into the store, for an air-gapped LAN.

pip resolves the requirements for the target (platform, Python) against *our* index, which serves
the names it owns itself and redirects the rest upstream: so the downloaded closure contains our
torch, never PyPI's, and only the files of names we do not own are added to the store."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename

from jetwheel.errors import JetwheelError
from jetwheel.index.client.client import IndexClient
from jetwheel.pipcmd import clean_pip, target_args
from jetwheel.target import Target


def mirror(
    client: IndexClient, requirements: Path, platform_tag: str, python: str, glibc: str, owned: set[str]
) -> list[str]:
    """Download the closure of `requirements` for the target through the index, upload the files of
    names it does not own and does not have yet. Returns the filenames added."""
    py = "cp" + python.replace(".", "")
    with tempfile.TemporaryDirectory(prefix="jetwheel-mirror-") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "-d",
            tmp,
            "--index-url",
            client.simple_url,
            *target_args(Target(python, platform_tag, "", "", glibc=glibc)),
            "-r",
            str(requirements),
        ]
        done = subprocess.run(clean_pip(cmd), capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
            raise JetwheelError(f"resolving {requirements} for {py} {platform_tag} failed: {last}")
        added = []
        for path in sorted(Path(tmp).iterdir()):
            name = (
                parse_wheel_filename(path.name)[0] if path.name.endswith(".whl") else parse_sdist_filename(path.name)[0]
            )
            if canonicalize_name(name) in owned or client.file_info(path.name) is not None:
                continue
            client.upload(path, mirror=True)  # may create names the upstream has (a builder's or admin's)
            added.append(path.name)
        return added
