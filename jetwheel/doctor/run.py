"""Start the scan where the environment is: in this process, under another interpreter, or in a
container of an OCI image (podman or docker), with the zipapp and the fact cache mounted."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
from pathlib import Path
from typing import Any

from jetwheel.doctor.carry import zipapp
from jetwheel.errors import ExitCode, JetwheelError
from jetwheel.verify.factcache import default_root


class CannotCheck(JetwheelError):
    """The environment could not be examined (no such interpreter or image, the scan failed)."""

    code = ExitCode.NOT_CHECKED  # report.UNCHECKED: the same 5 as a scan that could see only part
    lead = "could not check"


def scan_args(arch: str, driver: str, facts: str) -> list[str]:
    out = ["--arch", arch] if arch else []
    out += ["--driver", driver] if driver else []
    return out + (["--facts", facts] if facts else [])


def here(arch: str, driver: str, facts: Path | None) -> dict[str, Any]:
    """This interpreter's environment, examined in-process."""
    from jetwheel.doctor.scan import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        main(scan_args(arch, driver, str(facts) if facts else ""))
    doc: dict[str, Any] = json.loads(buf.getvalue())
    return doc


def _parse(done: subprocess.CompletedProcess[str], where: str) -> dict[str, Any]:
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise CannotCheck(f"{where}: the scan failed (exit {done.returncode}): {last}")
    try:
        doc: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        raise CannotCheck(f"{where}: the scan printed no report: {done.stdout[-200:]!r}") from None
    return doc


def python(exe: str, arch: str, driver: str, facts: Path | None) -> dict[str, Any]:
    """The environment of another interpreter, examined by the zipapp run with it."""
    args = [exe, str(zipapp()), *scan_args(arch, driver, str(facts or default_root()))]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CannotCheck(f"--python {exe}: cannot run it ({e})") from None
    return _parse(done, f"--python {exe}")


def image(name: str, engine: str, image_python: str, arch: str, driver: str, facts: Path | None) -> dict[str, Any]:
    """The environment inside `name`: a throw-away container, nothing installed into it, the
    zipapp mounted read-only and the fact cache read-write (facts are keyed by the image's files)."""
    from jetwheel.runners.docker import find_engine

    engine = find_engine(engine)
    cache = (facts or default_root()) / "images"
    cache.mkdir(parents=True, exist_ok=True)
    app = zipapp()
    args = [
        *(engine, "run", "--rm", "--pull=never", "--network=none", "--entrypoint", image_python),
        *("-v", f"{app}:/tmp/jetwheel-doctor.pyz:ro", "-v", f"{cache}:/tmp/jetwheel-facts"),
        *(name, "/tmp/jetwheel-doctor.pyz", *scan_args(arch, driver, "/tmp/jetwheel-facts")),
    ]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CannotCheck(f"--image {name}: cannot run {engine} ({e})") from None
    return _parse(done, f"--image {name}")
