"""The JSON the build side reads from the index (a file's record, the facts a build sent with it,
the build-cache lookup), `inv status`'s summary, and the health check a load balancer polls."""

from __future__ import annotations

import asyncio

from aiohttp import web

from jetwheel.index.server import web as web_pages
from jetwheel.index.server.guard import error
from jetwheel.index.server.reads import send_file
from jetwheel.index.store.catalog import Catalog
from jetwheel.wire import TRUSTED


class Api:
    def __init__(self, store: Catalog, auth_reads: bool) -> None:
        self.store = store
        self.auth_reads = auth_reads

    async def file_info(self, request: web.Request) -> web.StreamResponse:
        f = self.store.files().get(request.match_info["filename"])
        if f is None:
            return error(404, "no such file")
        return web.json_response(
            {
                "filename": f.filename,
                "project": f.project,
                "version": f.version,
                "size": f.size,
                "sha256": f.sha256,
                "upload_time": f.upload_time,
                "yanked": f.yanked,
                "published_by": f.published_by,
                "provenance": f.provenance,
                "verify": f.verify,
            }
        )

    async def facts(self, request: web.Request) -> web.StreamResponse:
        filename = request.match_info["filename"]
        return send_file(self.store, self.store.facts_path(filename), f"facts of {filename}", "application/gzip")

    async def cache_lookup(self, request: web.Request) -> web.StreamResponse:
        """Only a builder's (or admin's) file answers: anyone could claim a key, and a hit skips hours of build."""
        f = self.store.find_cache_key(request.match_info["key"], TRUSTED)
        if f is None:
            return error(404, "no wheel a builder published with this cache key")
        return web.json_response({"filename": f.filename, "sha256": f.sha256})

    async def status(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(await asyncio.to_thread(web_pages.summary, self.store))

    async def health(self, request: web.Request) -> web.StreamResponse:
        if self.auth_reads:  # public: what the index holds is for those who may read it
            return web.json_response({"ok": True})
        return web.json_response({"ok": True, "files": len(self.store.files())})
