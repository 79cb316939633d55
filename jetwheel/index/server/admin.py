"""The admin's changes to a published file: yank and unyank (PEP 592), and delete."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web

from jetwheel.errors import NotFound, StoreError, UploadRejected
from jetwheel.index.server.guard import error, refused
from jetwheel.index.store.store import Store


class Admin:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def yank(self, request: web.Request) -> web.StreamResponse:
        return await self._change(request, lambda f, body: self.store.yank(f, str(body.get("reason", ""))))

    async def unyank(self, request: web.Request) -> web.StreamResponse:
        return await self._change(request, lambda f, body: self.store.unyank(f))

    async def delete(self, request: web.Request) -> web.StreamResponse:
        return await self._change(request, lambda f, body: self.store.delete(f))

    async def _change(
        self, request: web.Request, action: Callable[[str, dict[str, object]], object]
    ) -> web.StreamResponse:
        """`action(filename, the request's JSON object)` in a thread; 400 for a body that is not a
        JSON object, 404 for a file the store does not hold."""
        try:
            body = await request.json() if request.can_read_body else {}
            if not isinstance(body, dict):
                raise ValueError("expected a JSON object")
            await asyncio.to_thread(action, request.match_info["filename"], body)
        except (ValueError, RecursionError) as e:
            return error(400, f"bad request body: {e}")
        except (UploadRejected, NotFound) as e:
            return refused(e)
        except StoreError as e:
            return error(404, str(e))
        return web.json_response({"ok": True})
