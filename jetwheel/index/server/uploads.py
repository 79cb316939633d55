"""Publishing to the index: the legacy upload API (twine, the client), streamed to the store's
staging, checked, and committed whole or not at all. Who may publish what is decided here: a name
the recipes own takes a builder (or admin), a new project that looks like one already here is
refused, only an admin may overwrite; every file records the role that published it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from packaging.utils import canonicalize_name

from jetwheel.errors import JetwheelError, UploadRejected
from jetwheel.index.server.auth import RANK
from jetwheel.index.server.guard import ROLE, error
from jetwheel.index.server.upload_form import BODY_IDLE, MAX_FACTS, json_field, read_parts
from jetwheel.index.store.names import confusable_with
from jetwheel.index.store.records import Hashes
from jetwheel.index.store.store import Store
from jetwheel.index.store.validate import check_artifact_name, parse_filename
from jetwheel.wire import ADMIN, BUILDER, UPLOAD

log = logging.getLogger("jetwheel.index")
GZIP_MAGIC = b"\x1f\x8b"
# An upload's checks (inflating the wheel) run in a pool of their own, never in the default one that
# file downloads use; an upload user's in one pool, a builder's or admin's in another, so a user's
# zip bombs never delay a build publishing. Each pool is bounded; an upload user's threads run at a
# lower CPU priority (Linux: niceness is per thread), so on a busy host the event loop serving
# pages and files, and builders' checks, get the CPU first.
CHECKS = {UPLOAD: 2, BUILDER: 2}
NICER = {UPLOAD: 10, BUILDER: 0}
HANGUP_POLL = 0.1  # seconds between looks at whether the uploader is still connected


class Uploads:
    def __init__(self, store: Store, owned: Callable[[], frozenset[str]], allow_overwrite: bool) -> None:
        self.store = store
        self.owned = owned
        self.allow_overwrite = allow_overwrite  # an admin may replace a file
        self.pools = {
            role: ThreadPoolExecutor(
                max_workers=n, thread_name_prefix=f"jetwheel-check-{role}", initializer=_nicer, initargs=(NICER[role],)
            )
            for role, n in CHECKS.items()
        }
        self.stopping = threading.Event()  # set when the server stops: checks in flight end at once

    def close(self) -> None:
        """Stop the checks in flight and their pools (the server is stopping)."""
        self.stopping.set()
        for pool in self.pools.values():
            pool.shutdown(wait=False, cancel_futures=True)

    async def _checked(self, request: web.Request, role: str, add: Callable[..., Any]) -> Any:
        """Run `add(stop=...)` in the role's pool; `stop()` turns true when the uploader hangs up
        or the server stops, and the check ends at its next chunk."""
        gone = threading.Event()

        def stop() -> bool:
            return gone.is_set() or self.stopping.is_set()

        pool = self.pools[UPLOAD if RANK[role] < RANK[BUILDER] else BUILDER]
        try:
            future = asyncio.get_running_loop().run_in_executor(pool, functools.partial(add, stop=stop))
        except RuntimeError:  # the pool is shut: the server is stopping
            raise UploadRejected("the index is stopping; upload again in a moment", 503) from None
        try:
            while not (await asyncio.wait({future}, timeout=HANGUP_POLL))[0]:
                transport = request.transport
                if transport is None or transport.is_closing():
                    gone.set()
        except asyncio.CancelledError:
            gone.set()  # the check ends at its next chunk: let it, before its staged file is removed
            await asyncio.wait({future}, timeout=5)
            raise
        return future.result()

    async def upload(self, request: web.Request) -> web.StreamResponse:
        length = request.content_length
        if length is not None and length > self.store.max_upload + MAX_FACTS + (1 << 20):
            return error(413, f"upload too large: {length} bytes > limit {self.store.max_upload}")
        role = request.get(ROLE, UPLOAD)
        try:
            return await self._upload(request, role)
        except UploadRejected as e:
            if e.status == 409 and self.allow_overwrite and role != ADMIN:
                return error(409, f"{e} (only an admin may overwrite)")
            return error(e.status, str(e))
        except asyncio.TimeoutError:
            return error(408, f"the upload sent nothing for {BODY_IDLE:.0f}s")
        except JetwheelError as e:
            return error(400, str(e))
        except (ValueError, AssertionError, asyncio.IncompleteReadError, ConnectionError, HttpProcessingError) as e:
            return error(400, f"malformed upload body: {e}")

    async def _upload(self, request: web.Request, role: str) -> web.StreamResponse:
        if not request.content_type.startswith("multipart/"):
            raise UploadRejected("upload must be multipart/form-data (the legacy API twine uses)", 400)
        reader = await request.multipart()
        hashes = Hashes()
        with self.store.staging() as (out, tmp), self.store.staging() as (facts_out, facts_tmp):
            filename, fields, has_facts = await read_parts(reader, out, hashes, facts_out, self.store.max_upload)
            if not filename:
                raise UploadRejected("no file in the upload (a 'content' part is required)", 400)
            for f in (out, facts_out):
                f.flush()
            if has_facts:
                with open(facts_tmp, "rb") as f:
                    if f.read(2) != GZIP_MAGIC:
                        raise UploadRejected("form field 'jetwheel_facts' must be gzip'd JSON", 400)
            if fields.get(":action", "file_upload") != "file_upload":
                raise UploadRejected(f"unsupported :action {fields.get(':action')!r}", 400)
            artifact = fields.get("jetwheel_artifact") == "1"
            self._may_publish(filename, artifact, role)
            if not artifact and fields.get("name") and "-" in filename:
                claimed = canonicalize_name(fields["name"])
                if claimed != canonicalize_name(filename.split("-", 1)[0]):
                    raise UploadRejected(f"form name {fields['name']!r} does not match file {filename!r}", 400)
            add = functools.partial(
                self.store.add,
                tmp,
                filename,
                hashes,
                sha256_digest=fields.get("sha256_digest", ""),
                md5_digest=fields.get("md5_digest", ""),
                artifact=artifact,
                facts=facts_tmp if has_facts else None,
                overwrite=self.allow_overwrite and role == ADMIN,
                published_by=role,
                provenance=json_field(fields, "jetwheel_provenance"),
                verify=json_field(fields, "jetwheel_verify"),
            )
            info = await self._checked(request, role, add)
        log.info("stored %s (%d bytes)", info.filename, info.size)
        return web.Response(status=200, text=f"stored {info.filename}\n")

    def _may_publish(self, filename: str, artifact: bool, role: str) -> None:
        """Refuse a name the recipes own to all but builders, and a new project that looks like one
        already here or owned (torch spelt with a Cyrillic o)."""
        if artifact:
            check_artifact_name(filename)
            project = canonicalize_name(filename.split("-", 1)[0])
        else:
            project = parse_filename(filename)[0]
        owned = self.owned()
        if project in owned and RANK[role] < RANK[BUILDER]:
            raise UploadRejected(
                f"{project}: a name the recipes own; only a builder or admin may publish it (this user is {role})", 403
            )
        projects = [] if artifact else self.store.projects()  # each call regroups every file
        if not artifact and project not in projects:
            other = confusable_with(project, [*projects, *owned])
            if other is not None:
                raise UploadRejected(
                    f"{project!r} looks like the project {other!r} (same Unicode TR39 skeleton): refused", 400
                )


def _nicer(by: int) -> None:
    """Lower this thread's CPU priority by `by` (a pool's initializer); where that is not allowed, as it is."""
    if by:
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + by)
