"""The profiles the index's pages show, and whether each one resolves from the store.

The server gets profiles as plain data (the build side turns its recipes into ProfileView before
starting it) and never reads recipes itself. Compatibility is computed when the store changes,
in-process over the store's own metadata (resolve.py: nothing an upload says is fetched or run);
the result is recorded in the store's derived data (.jetwheel/compat.json) for every worker to read.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass

from jetwheel.index.server.resolve import resolve
from jetwheel.index.store.catalog import Catalog
from jetwheel.target import Target

COMPAT = "compat.json"
log = logging.getLogger("jetwheel.index")


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


def check(store: Catalog, view: ProfileView, stop: Callable[[], bool] = lambda: False) -> Compat:
    """Would the profile's top requirement install for its target from this store alone?
    In-process over the store's metadata (resolve.py): no pip, no network, no build step; within
    resolve's time budget. A file whose metadata cannot be evaluated is left out and named."""
    where = f"cp{view.target.python.replace('.', '')} {view.target.platform}"
    try:
        got = resolve(store, [view.top], view.target, stop=stop)
    except ValueError as e:  # the profile's own requirement, or metadata resolve could not read
        return Compat(False, f"cannot check {view.top}: {e}")
    left_out = f"; left out: {'; '.join(got.broken)}" if got.broken else ""
    if got.missing:
        return Compat(False, f"{', '.join(got.missing)}: no {where} wheel on this index{left_out}")
    return Compat(True, f"{view.top} resolves to " + ", ".join(got.installs) + left_out)


def read(store: Catalog) -> tuple[list[int], dict[str, Compat]]:
    """(the store generation it was computed for, results by profile); empty when never computed."""
    try:
        doc = json.loads(store.state_path(COMPAT).read_bytes())
        return list(doc["generation"]), {
            k: Compat(bool(v["passed"]), str(v["detail"])) for k, v in doc["profiles"].items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return [], {}


async def refresh(
    store: Catalog,
    profiles: Mapping[str, ProfileView],
    stop: threading.Event | None = None,
    pool: Executor | None = None,
) -> dict[str, Compat] | None:
    """Compute and record every profile's compatibility for this generation of the store. Only one
    process does it at a time: None when another one is at it (its result lands in the same file).
    A profile none of whose packages the store holds is not worth resolving. The checks run in
    `pool` (the server's own thread for them, never the pool that serves files) and end early
    once `stop` is set; nothing is recorded then."""
    stop = stop or threading.Event()
    loop = asyncio.get_running_loop()
    with open(store.state_path("compat.lock"), "a+b") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        generation, present = store.generation(), set(store.projects())
        results = {
            name: await loop.run_in_executor(pool, functools.partial(check, store, view, stop.is_set))
            if present & set(view.versions)
            else Compat(False, "none of its packages is on this index yet")
            for name, view in profiles.items()
        }
        if stop.is_set():
            return None
        doc = {"generation": list(generation), "profiles": {k: vars(v) for k, v in results.items()}}
        tmp = store.scratch_path(f"{COMPAT}.{os.getpid()}")
        tmp.write_bytes(json.dumps(doc).encode())
        os.replace(tmp, store.state_path(COMPAT))
        return results


async def keep_fresh(
    store: Catalog, profiles: Mapping[str, ProfileView], stop: threading.Event, settle: float = 2.0
) -> None:
    """Run until `stop` is set: once the store has not changed for `settle` seconds and its recorded
    compatibility is for an older generation, compute it again. A failure is logged in one line and
    tried again at the next change; it never ends the loop."""
    seen: tuple[int, ...] | None = None
    failed: tuple[int, ...] | None = None  # the generation whose check failed: not tried again
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jetwheel-profiles")
    try:
        while not stop.is_set():
            await asyncio.sleep(settle)
            gen = store.generation()
            if gen != seen:  # still changing (a build publishing its wheels): wait until it settles
                seen = gen
                continue
            if read(store)[0] != list(gen) and gen != failed:
                try:
                    await refresh(store, profiles, stop, pool)
                except Exception as e:  # the checker outlives any one bad store state
                    failed = gen
                    log.warning("profile check failed (tried again at the next change): %s", e)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
