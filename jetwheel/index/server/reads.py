"""What pip, uv and build.py read from the index: the simple pages (PEP 503 HTML or PEP 691 JSON, as
the Accept header asks, with ETags) and the files with their METADATA (PEP 658). A project the index
does not hold goes upstream, when there is one, unless its name is one the recipes own."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from packaging.utils import canonicalize_name

from jetwheel import wire
from jetwheel.index.server import pages
from jetwheel.index.server.guard import error
from jetwheel.index.server.pagecache import PageCache
from jetwheel.index.store.catalog import Catalog
from jetwheel.index.store.validate import check_filename


def simple_pages(store: Catalog) -> dict[tuple[str, str], tuple[bytes, str]]:
    """Every simple page in both forms with its ETag."""
    rendered = pages.render_all(store.projects())
    return {k: (v, '"' + hashlib.sha256(v).hexdigest()[:32] + '"') for k, v in rendered.items()}


def send_file(store: Catalog, path: Path, what: str, content_type: str) -> web.StreamResponse:
    """A file of the store as the answer, or 404 for one that is missing or a symbolic link (never followed)."""
    if not store.regular_file(path):
        return error(404, f"{what}: no such file")
    # FileResponse: sendfile(2) (zero-copy), Range, ETag / If-None-Match, Last-Modified
    return web.FileResponse(path, chunk_size=1 << 20, headers={"Content-Type": content_type})


class Reads:
    def __init__(self, store: Catalog, cache: PageCache, owned: Callable[[], frozenset[str]], upstream: str) -> None:
        self.store = store
        self.cache = cache
        self.owned = owned
        self.upstream = upstream  # e.g. https://pypi.org/simple ; empty: air-gapped, no fallback

    async def simple_root(self, request: web.Request) -> web.StreamResponse:
        page = self._page(request, "")
        return page if page is not None else error(404, "not found")

    async def simple_project(self, request: web.Request) -> web.StreamResponse:
        raw = request.match_info["project"]
        name = canonicalize_name(raw)
        if raw != name or not request.path.endswith("/"):
            raise web.HTTPMovedPermanently(f"/simple/{name}/")
        page = self._page(request, name)
        if page is not None:
            return page
        if name in self.owned():
            # Ours even though nothing is published yet: falling back would hand out PyPI's build
            # (for torch on aarch64: a CPU-only wheel) in place of the one jetwheel must build.
            return error(404, f"{name}: built by jetwheel and not published here yet; never taken from upstream")
        if self.upstream:
            raise web.HTTPFound(f"{self.upstream.rstrip('/')}/{name}/")
        return error(404, f"{name}: not found on this index")

    def _page(self, request: web.Request, project: str) -> web.StreamResponse | None:
        """The rendered page in the form the client accepts; None if the project has no files here."""
        kind = pages.negotiate(request.headers.get("Accept", ""))
        if kind is None:
            return error(406, f"acceptable types: {wire.JSON_V1}, {wire.HTML_V1}, text/html")
        found: tuple[bytes, str] | None = self.cache.get(("simple",), lambda: simple_pages(self.store)).get(
            (project, "json" if kind == wire.JSON_V1 else "html")
        )
        if found is None:
            return None
        body, etag = found
        headers = {"ETag": etag, "Vary": "Accept", "Cache-Control": "max-age=60"}
        if etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, headers=headers, content_type=kind)

    async def package(self, request: web.Request) -> web.StreamResponse:
        """A distribution or artifact the store lists (never any other file in its root), or its METADATA."""
        filename = request.match_info["filename"]
        base = check_filename(filename[: -len(".metadata")] if filename.endswith(".metadata") else filename)
        f = self.store.files().get(base)
        if f is None or (base != filename and not f.metadata_sha256):
            return error(404, f"{filename}: no such file")
        path = self.store.metadata_path(base) if base != filename else self.store.path(base)
        return send_file(self.store, path, filename, "application/octet-stream")


async def to_simple(request: web.Request) -> web.StreamResponse:
    raise web.HTTPMovedPermanently("/simple/")
