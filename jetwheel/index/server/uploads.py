"""Publishing to the index: the legacy upload API (twine, the client, a mirror run, upload-artifact),
streamed to the store's staging, then handed to the store's one way in (store/publish.py: the
policy, PEP 541's ownership applied under the store's lock, and the integrity checks), committed
whole or not at all. Only an admin may overwrite; every file records the role that published it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from jetwheel.errors import AlreadyExists, JetwheelError, Unavailable, UploadRejected
from jetwheel.index.server.auth import RANK
from jetwheel.index.server.guard import ROLE, USER, error, refused
from jetwheel.index.server.upload_form import BODY_IDLE, MAX_FACTS, read_parts
from jetwheel.index.server.upstream import UpstreamNames
from jetwheel.index.store.ownership import Rules, Uploader
from jetwheel.index.store.publish import publish, upstream_question
from jetwheel.index.store.records import Hashes, StoredFile, Upload
from jetwheel.index.store.store import Store
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
    def __init__(
        self,
        store: Store,
        owned: Callable[[], frozenset[str]],
        allow_overwrite: bool,
        artifacts: frozenset[str] = frozenset(),
        upstream: str = "",
    ) -> None:
        self.store = store
        self.owned = owned
        self.artifacts = artifacts  # artifact file names the build consumes: builders' and admins' only
        self.allow_overwrite = allow_overwrite  # an admin may replace a file
        self.upstream = UpstreamNames(upstream) if upstream else None
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

    async def _checked(self, request: web.Request, role: str, add: Callable[..., StoredFile]) -> StoredFile:
        """Run `add(stop=...)` in the role's pool; `stop()` turns true when the uploader hangs up
        or the server stops, and the check ends at its next chunk."""
        gone = threading.Event()

        def stop() -> bool:
            return gone.is_set() or self.stopping.is_set()

        pool = self.pools[UPLOAD if RANK[role] < RANK[BUILDER] else BUILDER]
        try:
            future = asyncio.get_running_loop().run_in_executor(pool, functools.partial(add, stop=stop))
        except RuntimeError:  # the pool is shut: the server is stopping
            raise Unavailable("the index is stopping; upload again in a moment") from None
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
        except AlreadyExists as e:
            if self.allow_overwrite and role != ADMIN:
                return refused(AlreadyExists(f"{e} (only an admin may overwrite)"))
            return refused(e)
        except (UploadRejected, Unavailable) as e:
            return refused(e)
        except asyncio.TimeoutError:
            return error(408, f"the upload sent nothing for {BODY_IDLE:.0f}s")
        except JetwheelError as e:
            return error(400, str(e))
        except (ValueError, AssertionError, asyncio.IncompleteReadError, ConnectionError, HttpProcessingError) as e:
            return error(400, f"malformed upload body: {e}")

    async def _upload(self, request: web.Request, role: str) -> web.StreamResponse:
        if not request.content_type.startswith("multipart/"):
            raise UploadRejected("upload must be multipart/form-data (the legacy API twine uses)")
        reader = await request.multipart()
        hashes = Hashes()
        with self.store.staging() as (out, tmp), self.store.staging() as (facts_out, facts_tmp):
            filename, fields, has_facts = await read_parts(reader, out, hashes, facts_out, self.store.max_upload)
            if not filename:
                raise UploadRejected("no file in the upload (a 'content' part is required)")
            for f in (out, facts_out):
                f.flush()
            if has_facts:
                with open(facts_tmp, "rb") as f:
                    if f.read(2) != GZIP_MAGIC:
                        raise UploadRejected("form field 'jetwheel_facts' must be gzip'd JSON")
            if fields.get(":action", "file_upload") != "file_upload":
                raise UploadRejected(f"unsupported :action {fields.get(':action')!r}")
            upload = Upload(
                tmp,
                filename,
                hashes,
                sha256_digest=fields.get("sha256_digest", ""),
                md5_digest=fields.get("md5_digest", ""),
                name=fields.get("name", ""),
                artifact=fields.get("jetwheel_artifact") == "1",
                facts=facts_tmp if has_facts else None,
                provenance=fields.get("jetwheel_provenance"),
                verify=fields.get("jetwheel_verify"),
            )
            uploader = Uploader(request.get(USER, ""), role, fields.get("jetwheel_mirror") == "1")
            rules = Rules(self.owned(), self.artifacts)
            ask = upstream_question(self.store, upload, uploader, rules) if self.upstream is not None else None
            add = functools.partial(
                publish,
                self.store,
                upload,
                uploader,
                rules,
                upstream_has=self.upstream is not None and ask is not None and await self.upstream.has(ask),
                overwrite=self.allow_overwrite and role == ADMIN,
            )
            info = await self._checked(request, role, add)
        log.info("stored %s (%d bytes)", info.filename, info.size)
        return web.Response(status=200, text=f"stored {info.filename}\n")


def _nicer(by: int) -> None:
    """Lower this thread's CPU priority by `by` (a pool's initializer); where that is not allowed, as it is."""
    if by:
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + by)
