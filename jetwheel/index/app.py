"""The index's HTTP face (aiohttp): simple API reads, twine uploads, yank/delete, upstream fallback.

This is an edge: typed errors become one-line HTTP answers here and nowhere else. Every route
declares who may use it (public, read, upload, builder, admin); one middleware enforces it. Names the
recipes own may be published by a builder (or admin) alone, and only a builder's files answer a
build-cache lookup; every file says which role published it. Nothing in a
request steers the server: it connects to no address a request names, and its caches are keyed by
its own state only.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import hmac
import json
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from packaging.utils import canonicalize_name

from ..errors import JetwheelError, StoreError, UploadRejected
from . import pages, wire
from . import profiles as compat
from . import web as web_pages
from .auth import (
    RANK,
    TOKEN_PREFIX,
    BadCredentials,
    Throttle,
    Users,
    check_token,
    parse_basic,
)
from .auth import token_key as load_token_key
from .config import load_config
from .durable import FULL, disk_full
from .names import confusable_with
from .profiles import ProfileView
from .records import Hashes
from .store import Store
from .validate import check_artifact_name, check_filename, parse_filename
from .wire import ADMIN, BUILDER, PUBLIC, READ, TRUSTED, UPLOAD

log = logging.getLogger("jetwheel.index")
CHUNK = 1 << 16
MAX_FIELD = 8 << 20  # a form field (provenance, verify report)
MAX_FACTS = 64 << 20  # a build's facts about the file: gzip'd JSON
MAX_JSON_DEPTH = 64
BODY_IDLE = 60.0  # seconds an upload may send nothing before it is dropped
GZIP_MAGIC = b"\x1f\x8b"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ROLE = web.RequestKey("role", str)  # the role the request was let in with
FRONT_HEADER = "X-Jetwheel-Front"  # the nginx front's per-start secret (front.py): its X-Real-IP is true
LOOPBACK = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class Settings:
    htpasswd: Path | None = None
    roles: Mapping[str, str] = field(default_factory=dict)  # user -> read | upload | builder | admin (default upload)
    config: Path | None = None  # the index config: its roles and owned names are re-read when it changes
    auth_reads: bool = False  # reads need a login (or a token) too: a private LAN index
    upstream: str = ""  # e.g. https://pypi.org/simple ; empty: air-gapped, no fallback
    owned: frozenset[str] = frozenset()  # names recipes build: never from upstream, published by builders only
    allow_overwrite: bool = False  # an admin may replace a file
    profiles: Mapping[str, ProfileView] = field(default_factory=dict)  # for the web pages' matrices
    url: str = ""  # the index's address for people and pip, shown on the pages
    check_profiles: bool = False  # compute the profiles' compatibility after each change (in-process)
    front_secret: str = ""  # set by the nginx front it runs behind: requests bearing it name their client


class _PerGeneration:
    """Values computed from the store (rendered pages), kept until the store's generation changes.
    Keys come from the server's own state only; the cap is a guard, not a policy."""

    CAP = 64

    def __init__(self, store: Store) -> None:
        self.store = store
        self.gen: tuple[int, ...] | None = None
        self.values: dict[tuple[str, ...], Any] = {}

    def get(self, key: tuple[str, ...], compute: Callable[[], Any]) -> Any:
        gen = self.store.generation()
        if gen != self.gen or len(self.values) >= self.CAP:
            self.values, self.gen = {}, gen
        if key not in self.values:
            self.values[key] = compute()
        return self.values[key]


def _simple_pages(store: Store) -> dict[tuple[str, str], tuple[bytes, str]]:
    """Every simple page in both forms with its ETag."""
    rendered = pages.render_all(store.projects())
    return {k: (v, '"' + hashlib.sha256(v).hexdigest()[:32] + '"') for k, v in rendered.items()}


def _one_line(message: str) -> str:
    return " ".join(str(message).split())[:500]


def error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=_one_line(message) + "\n", headers=headers)


class IndexApp:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.cache = _PerGeneration(store)
        self.users = Users(settings.htpasswd, settings.roles)
        self.token_key = load_token_key(store.state)
        self.config_owned: frozenset[str] = frozenset()
        self._config_seen: int | None = None
        self.throttle = Throttle()
        # bcrypt runs here, not on the event loop nor in the threads that store uploads
        self.auth_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="jetwheel-auth")
        self.levels: dict[tuple[object, str], str] = {}  # (resource, method) -> who may use it
        # called when a request is done, with its transport (the connection guard re-arms its timer)
        self.on_done: Callable[[Any], None] = lambda transport: None

    def owned(self) -> frozenset[str]:
        return self.settings.owned | self.config_owned

    def _reread_config(self) -> None:
        """A role changed in the config counts from the next request on (one stat per request)."""
        path = self.settings.config
        if path is None:
            return
        try:
            seen = path.stat().st_mtime_ns
        except OSError:
            seen = 0
        if seen == self._config_seen:
            return
        try:
            cfg = load_config(path)
        except StoreError as e:  # half-edited: keep what was read last, and try again next time
            log.warning("%s", e)
            return
        self._config_seen = seen
        self.users.roles = dict(cfg.roles)
        self.config_owned = cfg.owned

    def client_address(self, request: web.Request) -> str:
        """The client's address: the peer's, or the one our own nginx front names (X-Real-IP from
        its $remote_addr) when the request comes from loopback with the front's per-start secret."""
        peer = request.remote or "unknown"
        secret = self.settings.front_secret
        if secret and peer in LOOPBACK:
            told = request.headers.get(FRONT_HEADER, "")
            if hmac.compare_digest(told.encode(), secret.encode()):
                return request.headers.get("X-Real-IP", peer)
        return peer

    def _token_role(self, token: str) -> str | None:
        """The role of a valid token: never more than its user may do now; None once the user is gone."""
        found = check_token(self.token_key, token, time.time())
        now = self.users.current_role(found.user) if found is not None else None
        if found is None or now is None:
            return None
        return min(found.role, now, key=RANK.__getitem__)

    # -- access ------------------------------------------------------------------------------------
    @web.middleware
    async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            method = "GET" if request.method == "HEAD" else request.method
            level = self.levels.get((request.match_info.route.resource, method), READ)
            denied = await self._authorize(request, level)
            if denied is not None:
                return denied
            return await handler(request)
        except UploadRejected as e:
            return error(e.status, str(e))
        except BadCredentials as e:
            return error(400, str(e))
        except OSError as e:
            if e.errno in FULL:
                return error(507, str(disk_full(e)))
            if e.errno == errno.ENAMETOOLONG:
                return error(400, "name too long")
            raise
        finally:
            self.on_done(request.transport)

    async def _authorize(self, request: web.Request, level: str) -> web.StreamResponse | None:
        if level == PUBLIC or (level == READ and not self.settings.auth_reads):
            return None
        if level != READ and not self.users.enabled:
            return error(403, "uploads are disabled: start the index with --htpasswd FILE")
        self._reread_config()
        address = self.client_address(request)
        now = time.monotonic()
        wait = self.throttle.wait(address, now)
        if wait > 0:
            return error(429, "too many failed logins from this address", {"Retry-After": str(math.ceil(wait))})
        creds = parse_basic(request.headers.get("Authorization", ""))
        if creds is None:
            return error(401, "authentication required", {"WWW-Authenticate": 'Basic realm="jetwheel"'})
        loop = asyncio.get_running_loop()
        if creds.password.startswith(TOKEN_PREFIX):
            role = await loop.run_in_executor(self.auth_pool, self._token_role, creds.password)
        else:
            role = await loop.run_in_executor(self.auth_pool, self.users.role, creds)
        if role is None:
            self.throttle.failed(address, now)
            log.warning("failed login for %r from %s", creds.user[:64], address)
            return error(401, "wrong user name, password or token", {"WWW-Authenticate": 'Basic realm="jetwheel"'})
        if RANK[role] < RANK[level]:
            return error(403, f"user {creds.user!r} has the role {role}; this needs {level}")
        request[ROLE] = role
        return None

    # -- reads -------------------------------------------------------------------------------------
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
        if self.settings.upstream:
            raise web.HTTPFound(f"{self.settings.upstream.rstrip('/')}/{name}/")
        return error(404, f"{name}: not found on this index")

    def _page(self, request: web.Request, project: str) -> web.StreamResponse | None:
        """The rendered page in the form the client accepts; None if the project has no files here."""
        kind = pages.negotiate(request.headers.get("Accept", ""))
        if kind is None:
            return error(406, f"acceptable types: {wire.JSON_V1}, {wire.HTML_V1}, text/html")
        found: tuple[bytes, str] | None = self.cache.get(("simple",), lambda: _simple_pages(self.store)).get(
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
        return self._file(path, filename, "application/octet-stream")

    async def facts(self, request: web.Request) -> web.StreamResponse:
        filename = request.match_info["filename"]
        return self._file(self.store.facts_path(filename), f"facts of {filename}", "application/gzip")

    def _file(self, path: Path, what: str, content_type: str) -> web.StreamResponse:
        if not self.store.regular_file(path):  # missing, or a symbolic link: never followed
            return error(404, f"{what}: no such file")
        # FileResponse: sendfile(2) (zero-copy), Range, ETag / If-None-Match, Last-Modified
        return web.FileResponse(path, chunk_size=1 << 20, headers={"Content-Type": content_type})

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

    async def cache_lookup(self, request: web.Request) -> web.StreamResponse:
        f = self.store.find_cache_key(request.match_info["key"], TRUSTED)
        if f is None:
            return error(404, "no wheel a builder published with this cache key")
        return web.json_response({"filename": f.filename, "sha256": f.sha256})

    # -- pages for people ----------------------------------------------------------------------------
    def _top(self) -> str:
        """The requirement the pip line shows: the top of the profile this index holds most of."""
        have = set(self.store.projects())
        best = max(self.settings.profiles.values(), key=lambda p: len(have & set(p.versions)), default=None)
        return best.top if best else "<package>"

    async def home(self, request: web.Request) -> web.StreamResponse:
        body = await asyncio.to_thread(
            self.cache.get,
            ("home",),
            lambda: web_pages.render_home(self.store, self.settings.url, self.settings.profiles, self._top()),
        )
        return web.Response(body=body, content_type="text/html", charset="utf-8")

    async def profile(self, request: web.Request) -> web.StreamResponse:
        view = self.settings.profiles.get(request.match_info["name"])
        if view is None:
            return error(404, f"no such profile; known: {', '.join(self.settings.profiles)}")
        checked_for, results = compat.read(self.store)
        # the result recorded for this very generation, else "not checked yet" (never a stale one)
        resolved = results.get(view.name) if checked_for == list(self.store.generation()) else None
        body = await asyncio.to_thread(
            self.cache.get,
            ("profile", view.name, json.dumps(checked_for)),
            lambda: web_pages.render_profile(self.store, view, resolved, self.settings.profiles),
        )
        return web.Response(body=body, content_type="text/html", charset="utf-8")

    async def status(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(await asyncio.to_thread(web_pages.summary, self.store))

    async def health(self, request: web.Request) -> web.StreamResponse:
        if self.settings.auth_reads:  # public: what the index holds is for those who may read it
            return web.json_response({"ok": True})
        return web.json_response({"ok": True, "files": len(self.store.files())})

    # -- writes ------------------------------------------------------------------------------------
    async def upload(self, request: web.Request) -> web.StreamResponse:
        length = request.content_length
        if length is not None and length > self.store.max_upload + MAX_FACTS + (1 << 20):
            return error(413, f"upload too large: {length} bytes > limit {self.store.max_upload}")
        try:
            return await self._upload(request)
        except UploadRejected as e:
            if e.status == 409 and self.settings.allow_overwrite and request.get(ROLE) != ADMIN:
                return error(409, f"{e} (only an admin may overwrite)")
            return error(e.status, str(e))
        except asyncio.TimeoutError:
            return error(408, f"the upload sent nothing for {BODY_IDLE:.0f}s")
        except JetwheelError as e:
            return error(400, str(e))
        except (ValueError, AssertionError, asyncio.IncompleteReadError, ConnectionError, HttpProcessingError) as e:
            return error(400, f"malformed upload body: {e}")

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        if not request.content_type.startswith("multipart/"):
            raise UploadRejected("upload must be multipart/form-data (the legacy API twine uses)", 400)
        reader = await request.multipart()
        hashes = Hashes()
        with self.store.staging() as (out, tmp), self.store.staging() as (facts_out, facts_tmp):
            filename, fields, has_facts = await _read_parts(reader, out, hashes, facts_out, self.store.max_upload)
            if not filename:
                raise UploadRejected("no file in the upload (a 'content' part is required)", 400)
            for f in (out, facts_out):
                f.flush()
                os.fsync(f.fileno())
            if has_facts:
                with open(facts_tmp, "rb") as f:
                    if f.read(2) != GZIP_MAGIC:
                        raise UploadRejected("form field 'jetwheel_facts' must be gzip'd JSON", 400)
            if fields.get(":action", "file_upload") != "file_upload":
                raise UploadRejected(f"unsupported :action {fields.get(':action')!r}", 400)
            artifact = fields.get("jetwheel_artifact") == "1"
            self._may_publish(filename, artifact, request.get(ROLE, UPLOAD))
            if not artifact and fields.get("name") and "-" in filename:
                claimed = canonicalize_name(fields["name"])
                if claimed != canonicalize_name(filename.split("-", 1)[0]):
                    raise UploadRejected(f"form name {fields['name']!r} does not match file {filename!r}", 400)
            extras = {k: _json_field(fields, f"jetwheel_{k}") for k in ("provenance", "verify")}
            info = await asyncio.to_thread(
                self.store.add,
                tmp,
                filename,
                hashes,
                sha256_digest=fields.get("sha256_digest", ""),
                md5_digest=fields.get("md5_digest", ""),
                artifact=artifact,
                facts=facts_tmp if has_facts else None,
                overwrite=self.settings.allow_overwrite and request.get(ROLE) == ADMIN,
                published_by=request.get(ROLE, UPLOAD),
                **extras,
            )
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
        if not artifact and project not in self.store.projects():
            other = confusable_with(project, [*self.store.projects(), *owned])
            if other is not None:
                raise UploadRejected(
                    f"{project!r} looks like the project {other!r} (same Unicode TR39 skeleton): refused", 400
                )

    async def yank(self, request: web.Request) -> web.StreamResponse:
        return await self._change(request, lambda f, body: self.store.yank(f, str(body.get("reason", ""))))

    async def unyank(self, request: web.Request) -> web.StreamResponse:
        return await self._change(request, lambda f, body: self.store.unyank(f))

    async def delete(self, request: web.Request) -> web.StreamResponse:
        return await self._change(request, lambda f, body: self.store.delete(f))

    async def _change(self, request: web.Request, action: Callable[[str, dict[str, Any]], Any]) -> web.StreamResponse:
        try:
            body = await request.json() if request.can_read_body else {}
            if not isinstance(body, dict):
                raise ValueError("expected a JSON object")
            await asyncio.to_thread(action, request.match_info["filename"], body)
        except (ValueError, RecursionError) as e:
            return error(400, f"bad request body: {e}")
        except UploadRejected as e:
            return error(e.status, str(e))
        except StoreError as e:
            return error(404, str(e))
        return web.json_response({"ok": True})


async def _stream(part: BodyPartReader, out: IO[bytes], hashes: Hashes, cap: int, what: str) -> None:
    while chunk := await asyncio.wait_for(part.read_chunk(CHUNK), BODY_IDLE):
        hashes.update(chunk)
        if hashes.size > cap:
            raise UploadRejected(f"{what} too large: over the limit of {cap} bytes", 413)
        try:
            out.write(chunk)
        except OSError as e:
            if e.errno in FULL:
                raise disk_full(e) from None
            raise


async def _read_field(part: BodyPartReader) -> str:
    value = bytearray()
    while chunk := await asyncio.wait_for(part.read_chunk(CHUNK), BODY_IDLE):
        value += chunk
        if len(value) > MAX_FIELD:
            raise UploadRejected(f"form field {part.name!r} is too large (over {MAX_FIELD} bytes)", 400)
    return value.decode("utf-8", errors="replace")


def _json_field(fields: dict[str, str], key: str) -> dict[str, Any]:
    if key not in fields:
        return {}
    try:
        value = json.loads(fields[key])
    except (ValueError, RecursionError):
        raise UploadRejected(f"form field {key!r} is not valid JSON (or nested too deeply)", 400) from None
    if not isinstance(value, dict):
        raise UploadRejected(f"form field {key!r} must be a JSON object", 400)
    if _depth(value) > MAX_JSON_DEPTH:
        raise UploadRejected(f"form field {key!r} is nested deeper than {MAX_JSON_DEPTH} levels", 400)
    return value


def _depth(value: Any) -> int:
    """Nesting depth, without recursion (the parser already bounded it by its own stack)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        v, d = todo.pop()
        deepest = max(deepest, d)
        if isinstance(v, dict):
            todo += [(x, d + 1) for x in v.values()]
        elif isinstance(v, list):
            todo += [(x, d + 1) for x in v]
    return deepest


INDEX = web.AppKey("index", IndexApp)


async def _read_parts(
    reader: MultipartReader, out: IO[bytes], hashes: Hashes, facts_out: IO[bytes], max_upload: int
) -> tuple[str, dict[str, str], bool]:
    """Stream an upload's parts: the file into `out` (hashed on the way), the facts into `facts_out`,
    the other fields into memory. (the file's name, "" when none was sent; the fields; facts sent?)"""
    fields: dict[str, str] = {}
    filename, has_facts = "", False
    while (part := await asyncio.wait_for(reader.next(), BODY_IDLE)) is not None:
        if not isinstance(part, BodyPartReader):
            raise UploadRejected("nested multipart is not supported", 400)
        if part.name == "content":
            if filename:
                raise UploadRejected("more than one file in the upload", 400)
            filename = part.filename or ""
            if not filename:
                raise UploadRejected("the content part has no filename", 400)
            check_filename(filename)  # before a byte of it is written
            await _stream(part, out, hashes, max_upload, "file")
        elif part.name == "jetwheel_facts":
            has_facts = True
            await _stream(part, facts_out, Hashes(), MAX_FACTS, "jetwheel_facts")
        elif part.name:
            fields[part.name] = await _read_field(part)
    return filename, fields, has_facts


def make_app(store: Store, settings: Settings) -> web.Application:
    index = IndexApp(store, settings)
    app = web.Application(client_max_size=1 << 20, middlewares=[index.guard])
    app[INDEX] = index
    routes: list[tuple[str, str, Handler, str]] = [
        ("GET", wire.HEALTH, index.health, PUBLIC),
        ("GET", "/", index.home, READ),
        ("GET", "/profiles/{name}", index.profile, READ),
        ("GET", wire.STATUS, index.status, READ),
        ("GET", wire.SIMPLE, index.simple_root, READ),
        ("GET", "/simple", _to_simple, READ),
        ("GET", wire.PROJECT, index.simple_project, READ),
        ("GET", "/simple/{project}", index.simple_project, READ),
        ("GET", wire.PACKAGE, index.package, READ),
        ("GET", wire.FILE, index.file_info, READ),
        ("GET", wire.FACTS, index.facts, READ),
        ("GET", wire.CACHE, index.cache_lookup, READ),
        *(("POST", path, index.upload, UPLOAD) for path in wire.UPLOADS),
        ("DELETE", wire.FILE, index.delete, ADMIN),
        ("POST", wire.YANK, index.yank, ADMIN),
        ("POST", wire.UNYANK, index.unyank, ADMIN),
    ]
    for method, path, handler, level in routes:
        # add_get also answers HEAD, at the same level
        route = app.router.add_get(path, handler) if method == "GET" else app.router.add_route(method, path, handler)
        index.levels[(route.resource, method)] = level
    if settings.check_profiles and settings.profiles:
        app.cleanup_ctx.append(_checking_profiles)
    app.on_cleanup.append(_stop_auth_pool)
    return app


async def _checking_profiles(app: web.Application) -> Any:
    index: IndexApp = app[INDEX]
    task = asyncio.create_task(compat.keep_fresh(index.store, index.settings.profiles))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _stop_auth_pool(app: web.Application) -> None:
    app[INDEX].auth_pool.shutdown(wait=False)


async def _to_simple(request: web.Request) -> web.StreamResponse:
    raise web.HTTPMovedPermanently("/simple/")
