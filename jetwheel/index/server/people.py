"""The index's pages for people: the home page (what it holds, the pip line to use) and one page per
profile (which version of each package it holds, and whether the set resolves), rendered by web.py
and kept per store generation."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping

from aiohttp import web
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from jetwheel.index.server import profiles as compat
from jetwheel.index.server import web as web_pages
from jetwheel.index.server.guard import error
from jetwheel.index.server.pagecache import PageCache
from jetwheel.index.server.profiles import ProfileView
from jetwheel.index.store.catalog import Catalog


class People:
    def __init__(self, store: Catalog, cache: PageCache, profiles: Mapping[str, ProfileView], url: str) -> None:
        self.store = store
        self.cache = cache
        self.profiles = profiles
        self.url = url  # the index's address for people and pip, shown on the pages

    def _top(self) -> str:
        """The requirement the pip line shows: the top of the profile this index holds most of, when
        the index holds that project; else a project it holds; "<package>" when it holds none."""
        have = set(self.store.projects())
        best = max(self.profiles.values(), key=lambda p: len(have & set(p.versions)), default=None)
        if best is not None and canonicalize_name(Requirement(best.top).name) in have:
            return best.top
        return min(have, default="<package>")

    async def home(self, request: web.Request) -> web.StreamResponse:
        body = await asyncio.to_thread(
            self.cache.get,
            ("home",),
            lambda: web_pages.render_home(self.store, self.url, self.profiles, self._top()),
        )
        return web.Response(body=body, content_type="text/html", charset="utf-8")

    async def profile(self, request: web.Request) -> web.StreamResponse:
        view = self.profiles.get(request.match_info["name"])
        if view is None:
            return error(404, f"no such profile; known: {', '.join(self.profiles)}")
        checked_for, results = compat.read(self.store)
        # the result recorded for this very generation, else "not checked yet" (never a stale one)
        resolved = results.get(view.name) if checked_for == list(self.store.generation()) else None
        body = await asyncio.to_thread(
            self.cache.get,
            ("profile", view.name, json.dumps(checked_for)),
            lambda: web_pages.render_profile(self.store, view, resolved, self.profiles),
        )
        return web.Response(body=body, content_type="text/html", charset="utf-8")
