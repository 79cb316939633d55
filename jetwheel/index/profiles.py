"""The profiles the index's pages show, and whether each one resolves from the store.

The server gets profiles as plain data (the build side turns its recipes into ProfileView before
starting it) and never reads recipes itself. Compatibility is computed when the store changes, by a
pip that the server runs against its own configured URL, never against an address a request named;
the result is recorded in the store's derived data (.jetwheel/compat.json) for every worker to read.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..pipcmd import clean_pip_env, target_args
from ..target import Target
from .store import Store

COMPAT = "compat.json"
PIP_TIMEOUT = 300.0
_MISSING = re.compile(r"No matching distribution found for (\S+)")


@dataclass(frozen=True)
class ProfileView:
    """What a page needs to know about one profile."""

    name: str
    top: str  # the requirement the profile exists for, e.g. vllm==0.8.1
    versions: Mapping[str, str]  # canonical name -> pinned version
    target: Target
    jetpack: str = ""
    l4t: str = ""


@dataclass(frozen=True)
class Compat:
    passed: bool
    detail: str


def pip_command(view: ProfileView, simple_url: str, report: Path) -> list[str]:
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
        simple_url,
        # the server talks to itself over loopback: with TLS, its certificate need not name 127.0.0.1
        "--trusted-host",
        "127.0.0.1",
        *target_args(view.target),
        view.top,
    ]


async def resolve(view: ProfileView, simple_url: str, timeout: float = PIP_TIMEOUT) -> Compat:
    """Would pip install the profile's top requirement for its target from `simple_url`? Runs pip
    as a child process (the event loop and its threads keep serving meanwhile), bounded in time."""
    where = f"cp{view.target.python.replace('.', '')} {view.target.platform}"
    with tempfile.TemporaryDirectory(prefix="jetwheel-compat-") as tmp:
        report = Path(tmp) / "report.json"
        proc = await asyncio.create_subprocess_exec(
            *pip_command(view, simple_url, report),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=clean_pip_env(),
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            return Compat(False, f"pip did not finish resolving {view.top} for {where} in {timeout:.0f}s")
        if proc.returncode == 0 and report.is_file():
            doc = json.loads(report.read_bytes())
            got = [f"{i['metadata']['name']}=={i['metadata']['version']}" for i in doc.get("install", [])]
            return Compat(True, f"{view.top} resolves to " + ", ".join(got))
    text = out.decode("utf-8", "replace")
    missing = _MISSING.findall(text)
    if missing:
        return Compat(False, f"{', '.join(missing)}: no {where} wheel on this index")
    last = (text.strip().splitlines() or ["pip failed"])[-1]
    return Compat(False, f"pip cannot resolve {view.top} for {where}: {last[:300]}")


def read(state: Path) -> tuple[list[int], dict[str, Compat]]:
    """(the store generation it was computed for, results by profile); empty when never computed."""
    try:
        doc = json.loads((state / COMPAT).read_bytes())
        return list(doc["generation"]), {
            k: Compat(bool(v["passed"]), str(v["detail"])) for k, v in doc["profiles"].items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return [], {}


async def refresh(store: Store, profiles: Mapping[str, ProfileView], simple_url: str) -> dict[str, Compat] | None:
    """Compute and record every profile's compatibility for this generation of the store. Only one
    process does it at a time: None when another one is at it (its result lands in the same file).
    A profile none of whose packages the store holds is not worth a pip run."""
    with open(store.state / "compat.lock", "a+b") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        generation, present = store.generation(), set(store.projects())
        results = {
            name: await resolve(view, simple_url)
            if present & set(view.versions)
            else Compat(False, "none of its packages is on this index yet")
            for name, view in profiles.items()
        }
        doc = {"generation": list(generation), "profiles": {k: vars(v) for k, v in results.items()}}
        tmp = store.tmp / f"{COMPAT}.{os.getpid()}"
        tmp.write_bytes(json.dumps(doc).encode())
        os.replace(tmp, store.state / COMPAT)
        return results


async def keep_fresh(
    store: Store, profiles: Mapping[str, ProfileView], simple_url: Callable[[], str], settle: float = 2.0
) -> None:
    """Run forever: once the store has not changed for `settle` seconds and its recorded
    compatibility is for an older generation, compute it again."""
    seen: tuple[int, ...] | None = None
    while True:
        await asyncio.sleep(settle)
        gen = store.generation()
        if gen != seen:  # still changing (a build publishing its wheels): wait until it settles
            seen = gen
            continue
        if read(store.state)[0] != list(gen):
            with contextlib.suppress(OSError):
                await refresh(store, profiles, simple_url())
