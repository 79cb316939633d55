"""The index's HTTP face (aiohttp): the table of its routes, who may use each, and the parts that
answer them.

    guard.py     who may use a route (public, read, upload, builder, admin), enforced in one
                 middleware; the edge where typed errors become one-line HTTP answers
    reads.py     /simple/ pages (PEP 503/691) and /packages/ files with METADATA (PEP 658); upstream fallback
    api.py       /api/files, /api/facts, /api/cache (the build side), /api/status, /health
    people.py    the pages for people: / and /profiles/<name>
    uploads.py   publishing (the legacy upload API), with upload_form.py reading its body, into store/publish.py
    admin.py     yank, unyank, delete

Every name has an owner (store/ownership.py, PEP 541's model): the recipes' names, the build's artifacts
and mirrored names are the builders' and admins', others their creator's; only a builder's files
answer a build-cache lookup; every file says which role published it. Nothing in a request steers
the server: it connects to no address a request names, and its caches are keyed by its own state only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from jetwheel import wire
from jetwheel.index.server import profiles as compat
from jetwheel.index.server.admin import Admin
from jetwheel.index.server.api import Api
from jetwheel.index.server.auth import TOKEN_KEY, Users
from jetwheel.index.server.auth import token_key as load_token_key
from jetwheel.index.server.guard import Guard, Handler
from jetwheel.index.server.pagecache import PageCache
from jetwheel.index.server.people import People
from jetwheel.index.server.profiles import ProfileView
from jetwheel.index.server.reads import Reads, to_simple
from jetwheel.index.server.throttle import THROTTLE, SharedThrottle
from jetwheel.index.server.uploads import Uploads
from jetwheel.index.store.catalog import Catalog
from jetwheel.index.store.store import Store
from jetwheel.wire import ADMIN, PUBLIC, READ, UPLOAD


@dataclass(frozen=True)
class Settings:
    htpasswd: Path | None = None
    roles: Mapping[str, str] = field(default_factory=dict)  # user -> read | upload | builder | admin (default upload)
    config: Path | None = None  # the index config: its roles and owned names are re-read when it changes
    auth_reads: bool = False  # reads need a login (or a token) too: a private LAN index
    upstream: str = ""  # e.g. https://pypi.org/simple ; empty: air-gapped, no fallback
    owned: frozenset[str] = frozenset()  # names recipes build: never from upstream, published by builders only
    artifacts: frozenset[str] = frozenset()  # artifact file names the build consumes: builders' and admins' only
    allow_overwrite: bool = False  # an admin may replace a file
    profiles: Mapping[str, ProfileView] = field(default_factory=dict)  # for the web pages' matrices
    url: str = ""  # the index's address for people and pip, shown on the pages
    check_profiles: bool = False  # compute the profiles' compatibility after each change (in-process)
    front_secret: str = ""  # set by the nginx front it runs behind: requests bearing it name their client
    # observers of each committed change (the nginx front's tree: front.static.follow), given by whoever
    # starts the server: the server knows no room built on it
    followers: tuple[Callable[[Catalog, str], None], ...] = ()


@dataclass(frozen=True)
class IndexApp:
    """What the app's parts share: the store, how it was started, the rendered pages, the guard."""

    store: Store
    settings: Settings
    cache: PageCache
    guard: Guard


INDEX = web.AppKey("index", IndexApp)


def make_app(store: Store, settings: Settings) -> web.Application:
    guard = Guard(
        Users(settings.htpasswd, settings.roles),
        load_token_key(store.state_path(TOKEN_KEY)),
        SharedThrottle(store.state_path(THROTTLE)),
        config=settings.config,
        owned=settings.owned,
        auth_reads=settings.auth_reads,
        front_secret=settings.front_secret,
    )
    index = IndexApp(store, settings, PageCache(store), guard)
    app = web.Application(client_max_size=1 << 20, middlewares=[guard.middleware])
    app[INDEX] = index
    reads = Reads(store, index.cache, guard.owned, settings.upstream)
    api = Api(store, settings.auth_reads)
    people = People(store, index.cache, settings.profiles, settings.url)
    uploads = Uploads(store, guard.owned, settings.allow_overwrite, settings.artifacts, settings.upstream)
    admin = Admin(store)
    routes: list[tuple[str, str, Handler, str]] = [
        ("GET", wire.HEALTH, api.health, PUBLIC),
        ("GET", "/", people.home, READ),
        ("GET", "/profiles/{name}", people.profile, READ),
        ("GET", wire.STATUS, api.status, READ),
        ("GET", wire.SIMPLE, reads.simple_root, READ),
        ("GET", "/simple", to_simple, READ),
        ("GET", wire.PROJECT, reads.simple_project, READ),
        ("GET", "/simple/{project}", reads.simple_project, READ),
        ("GET", wire.PACKAGE, reads.package, READ),
        ("GET", wire.FILE, api.file_info, READ),
        ("GET", wire.FACTS, api.facts, READ),
        ("GET", wire.CACHE, api.cache_lookup, READ),
        *(("POST", path, uploads.upload, UPLOAD) for path in wire.UPLOADS),
        ("DELETE", wire.FILE, admin.delete, ADMIN),
        ("POST", wire.YANK, admin.yank, ADMIN),
        ("POST", wire.UNYANK, admin.unyank, ADMIN),
    ]
    for method, path, handler, level in routes:
        # add_get also answers HEAD, at the same level
        route = app.router.add_get(path, handler) if method == "GET" else app.router.add_route(method, path, handler)
        guard.levels[(route.resource, method)] = level
    stopping = threading.Event()  # set as the server stops: every check in a thread ends early
    if settings.check_profiles and settings.profiles:
        app.cleanup_ctx.append(functools.partial(_checking_profiles, stop=stopping))
    app.on_cleanup.append(_stop_auth_pool)

    async def stop_checks(app: web.Application) -> None:
        stopping.set()
        uploads.close()

    # on_shutdown runs before the connections are closed: a check in flight ends at its next chunk
    app.on_shutdown.append(stop_checks)
    return app


async def _checking_profiles(app: web.Application, stop: threading.Event) -> AsyncIterator[None]:
    index = app[INDEX]
    task = asyncio.create_task(compat.keep_fresh(index.store, index.settings.profiles, stop))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _stop_auth_pool(app: web.Application) -> None:
    app[INDEX].guard.auth_pool.shutdown(wait=False)
    app[INDEX].guard.throttle.close()
