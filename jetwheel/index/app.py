"""The index's HTTP face (aiohttp): simple API reads, twine uploads, yank/delete, upstream fallback.

This is an edge: typed errors become one-line HTTP answers here and nowhere else.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from packaging.utils import canonicalize_name
from passlib.apache import HtpasswdFile

from ..errors import JetwheelError, StoreError, UploadRejected
from ..recipe import Profile
from . import pages
from . import web as web_pages
from .store import Hashes, Store

log = logging.getLogger("jetwheel.index")
CHUNK = 1 << 16


@dataclass
class Settings:
    htpasswd: Path | None = None
    auth_reads: bool = False  # reads need a login too (private LAN index)
    upstream: str = ""  # e.g. https://pypi.org/simple ; empty: air-gapped, no fallback
    owned: frozenset[str] = frozenset()  # names recipes build: never taken from upstream
    admins: frozenset[str] = frozenset()  # may delete; empty: every htpasswd user may
    profiles: Mapping[str, Profile] = field(default_factory=dict)  # for the web pages' matrices


class _PerGeneration:
    """Values computed from the store (rendered pages), kept until the store's generation changes."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.gen: tuple[int, ...] | None = None
        self.values: dict[tuple[str, ...], Any] = {}

    def get(self, key: tuple[str, ...], compute: Callable[[], Any]) -> Any:
        gen = self.store.generation()
        if gen != self.gen:
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


def error(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=_one_line(message) + "\n")


class IndexApp:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.cache = _PerGeneration(store)
        self._htpasswd: HtpasswdFile | None = None
        if settings.htpasswd:
            if not settings.htpasswd.is_file():
                raise StoreError(f"htpasswd file {settings.htpasswd} does not exist")
            self._htpasswd = HtpasswdFile(str(settings.htpasswd))

    # -- auth --------------------------------------------------------------------------------------
    def _user(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic ") or self._htpasswd is None:
            return None
        try:
            user, _, password = base64.b64decode(header[6:]).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        self._htpasswd.load_if_changed()
        return user if self._htpasswd.check_password(user, password) else None

    def _require(self, request: web.Request, write: bool, admin: bool = False) -> web.Response | None:
        if not write and not self.settings.auth_reads:
            return None
        if self._htpasswd is None:
            if write:
                return error(403, "uploads are disabled: start the index with --htpasswd FILE")
            return None
        user = self._user(request)
        if user is None:
            return web.Response(
                status=401, text="authentication required\n", headers={"WWW-Authenticate": 'Basic realm="jetwheel"'}
            )
        if admin and self.settings.admins and user not in self.settings.admins:
            return error(403, f"user {user!r} is not an admin of this index")
        return None

    # -- reads -------------------------------------------------------------------------------------
    async def simple_root(self, request: web.Request) -> web.StreamResponse:
        denied = self._require(request, write=False)
        if denied is not None:
            return denied
        page = self._page(request, "")
        return page if page is not None else error(404, "not found")

    async def simple_project(self, request: web.Request) -> web.StreamResponse:
        raw = request.match_info["project"]
        name = canonicalize_name(raw)
        if raw != name or not request.path.endswith("/"):
            raise web.HTTPMovedPermanently(f"/simple/{name}/")
        denied = self._require(request, write=False)
        if denied is not None:
            return denied
        page = self._page(request, name)
        if page is not None:
            return page
        if name in self.settings.owned:
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
            return error(406, f"acceptable types: {pages.JSON_V1}, {pages.HTML_V1}, text/html")
        found: tuple[bytes, str] | None = self.cache.get(("simple",), lambda: _simple_pages(self.store)).get(
            (project, "json" if kind == pages.JSON_V1 else "html")
        )
        if found is None:
            return None
        body, etag = found
        headers = {"ETag": etag, "Vary": "Accept", "Cache-Control": "max-age=60"}
        if etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, headers=headers, content_type=kind)

    async def package(self, request: web.Request) -> web.StreamResponse:
        denied = self._require(request, write=False)
        if denied:
            return denied
        filename = request.match_info["filename"]
        try:
            if filename.endswith(".metadata"):
                path = self.store.metadata_path(filename[: -len(".metadata")])
            else:
                path = self.store.path(filename)
        except UploadRejected as e:
            return error(400, str(e))
        if not path.is_file():
            return error(404, f"{filename}: no such file")
        # FileResponse: sendfile(2) (zero-copy), Range, ETag / If-None-Match, Last-Modified
        return web.FileResponse(path, chunk_size=1 << 20, headers={"Content-Type": "application/octet-stream"})

    async def file_info(self, request: web.Request) -> web.StreamResponse:
        denied = self._require(request, write=False)
        if denied:
            return denied
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
                "provenance": f.provenance,
                "verify": f.verify,
            }
        )

    async def cache_lookup(self, request: web.Request) -> web.StreamResponse:
        denied = self._require(request, write=False)
        if denied:
            return denied
        f = self.store.find_cache_key(request.match_info["key"])
        if f is None:
            return error(404, "no wheel with this cache key")
        return web.json_response({"filename": f.filename, "sha256": f.sha256})

    # -- pages for people ----------------------------------------------------------------------------
    def _top(self) -> str:
        """The requirement the pip line shows: the top of the profile this index holds most of."""
        have = set(self.store.projects())
        best = max(self.settings.profiles.values(), key=lambda p: len(have & set(p.versions)), default=None)
        return best.top if best else "<package>"

    async def home(self, request: web.Request) -> web.StreamResponse:
        denied = self._require(request, write=False)
        if denied:
            return denied
        base = f"{request.scheme}://{request.host}"
        body = await asyncio.to_thread(
            self.cache.get,
            ("home", base),
            lambda: web_pages.render_home(self.store, base, self.settings.profiles, self._top()),
        )
        return web.Response(body=body, content_type="text/html", charset="utf-8")

    async def profile(self, request: web.Request) -> web.StreamResponse:
        denied = self._require(request, write=False)
        if denied:
            return denied
        prof = self.settings.profiles.get(request.match_info["name"])
        if prof is None:
            return error(404, f"no profile {request.match_info['name']!r}; known: {', '.join(self.settings.profiles)}")
        base = f"{request.scheme}://{request.host}"

        def render() -> bytes:
            # pip resolves against this very server (from a thread, so the loop keeps serving it)
            resolved = web_pages.resolve_status(prof, f"{base}/simple/")
            return web_pages.render_profile(self.store, prof, resolved, self.settings.profiles)

        body = await asyncio.to_thread(self.cache.get, ("profile", prof.name, base), render)
        return web.Response(body=body, content_type="text/html", charset="utf-8")

    async def status(self, request: web.Request) -> web.StreamResponse:
        denied = self._require(request, write=False)
        if denied:
            return denied
        return web.json_response(await asyncio.to_thread(web_pages.summary, self.store))

    async def health(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"ok": True, "files": len(self.store.files())})

    # -- writes ------------------------------------------------------------------------------------
    async def upload(self, request: web.Request) -> web.StreamResponse:
        denied = self._require(request, write=True)
        if denied:
            return denied
        length = request.content_length
        if length is not None and length > self.store.max_upload + (1 << 20):
            return error(413, f"upload too large: {length} bytes > limit {self.store.max_upload}")
        try:
            return await self._upload(request)
        except UploadRejected as e:
            return error(e.status, str(e))
        except JetwheelError as e:
            return error(400, str(e))
        except (ValueError, AssertionError, asyncio.IncompleteReadError, ConnectionError, HttpProcessingError) as e:
            return error(400, f"malformed upload body: {e}")

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        if not request.content_type.startswith("multipart/"):
            raise UploadRejected("upload must be multipart/form-data (the legacy API twine uses)", 400)
        reader = await request.multipart()
        fields: dict[str, str] = {}
        filename = ""
        hashes = Hashes()
        with self.store.staging() as (out, tmp):
            while True:
                part = await reader.next()
                if part is None:
                    break
                if not isinstance(part, BodyPartReader):
                    raise UploadRejected("nested multipart is not supported", 400)
                if part.name == "content":
                    if filename:
                        raise UploadRejected("more than one file in the upload", 400)
                    filename = part.filename or ""
                    if not filename:
                        raise UploadRejected("the content part has no filename", 400)
                    while chunk := await part.read_chunk(CHUNK):
                        hashes.update(chunk)
                        if hashes.size > self.store.max_upload:
                            raise UploadRejected(
                                f"file too large: over the limit of {self.store.max_upload} bytes", 413
                            )
                        out.write(chunk)
                elif part.name:
                    value = await part.read(decode=False)
                    if len(value) > 8 << 20:
                        raise UploadRejected(f"form field {part.name!r} is too large", 400)
                    fields[part.name] = value.decode("utf-8", errors="replace")
            out.flush()
            os.fsync(out.fileno())
            if fields.get(":action", "file_upload") != "file_upload":
                raise UploadRejected(f"unsupported :action {fields.get(':action')!r}", 400)
            if not filename:
                raise UploadRejected("no file in the upload (a 'content' part is required)", 400)
            artifact = fields.get("jetwheel_artifact") == "1"
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
                **extras,
            )
        log.info("stored %s (%d bytes)", info.filename, info.size)
        return web.Response(status=200, text=f"stored {info.filename}\n")

    async def yank(self, request: web.Request) -> web.StreamResponse:
        return await self._change(request, lambda f, body: self.store.yank(f, str(body.get("reason", ""))))

    async def unyank(self, request: web.Request) -> web.StreamResponse:
        return await self._change(request, lambda f, body: self.store.unyank(f))

    async def delete(self, request: web.Request) -> web.StreamResponse:
        return await self._change(request, lambda f, body: self.store.delete(f), admin=True)

    async def _change(
        self, request: web.Request, action: Callable[[str, dict[str, Any]], Any], admin: bool = False
    ) -> web.StreamResponse:
        denied = self._require(request, write=True, admin=admin)
        if denied:
            return denied
        try:
            body = await request.json() if request.can_read_body else {}
            if not isinstance(body, dict):
                raise ValueError("expected a JSON object")
            await asyncio.to_thread(action, request.match_info["filename"], body)
        except ValueError as e:
            return error(400, f"bad request body: {e}")
        except UploadRejected as e:
            return error(e.status, str(e))
        except StoreError as e:
            return error(404, str(e))
        return web.json_response({"ok": True})


def _json_field(fields: dict[str, str], key: str) -> dict[str, Any]:
    if key not in fields:
        return {}
    try:
        value = json.loads(fields[key])
    except ValueError:
        raise UploadRejected(f"form field {key!r} is not valid JSON", 400) from None
    if not isinstance(value, dict):
        raise UploadRejected(f"form field {key!r} must be a JSON object", 400)
    return value


def make_app(store: Store, settings: Settings) -> web.Application:
    index = IndexApp(store, settings)
    app = web.Application(client_max_size=1 << 20)
    app["index"] = index
    r = app.router
    r.add_get("/health", index.health)
    r.add_get("/", index.home)
    r.add_get("/profiles/{name}", index.profile)
    r.add_get("/api/status", index.status)
    r.add_get("/simple/", index.simple_root)
    r.add_get("/simple", lambda req: _redirect("/simple/"))
    r.add_get("/simple/{project}/", index.simple_project)
    r.add_get("/simple/{project}", index.simple_project)
    r.add_get("/packages/{filename}", index.package)
    r.add_post("/", index.upload)
    r.add_post("/legacy/", index.upload)
    r.add_get("/api/files/{filename}", index.file_info)
    r.add_delete("/api/files/{filename}", index.delete)
    r.add_post("/api/files/{filename}/yank", index.yank)
    r.add_post("/api/files/{filename}/unyank", index.unyank)
    r.add_get("/api/cache/{key}", index.cache_lookup)
    return app


async def _redirect(location: str) -> web.StreamResponse:
    raise web.HTTPMovedPermanently(location)


def serve(
    root: Path,
    host: str,
    port: int,
    settings: Settings,
    allow_overwrite: bool = False,
    max_upload: int = 8 << 30,
    workers: int = 1,
) -> None:
    """Run the index until interrupted. Cleans staging leftovers of a killed predecessor first.

    With workers > 1, that many processes share the port (SO_REUSEPORT) and the kernel spreads
    connections over them; the store's lock and generation file keep them consistent."""
    store = Store(root, allow_overwrite=allow_overwrite, max_upload=max_upload)
    store.clean_tmp()
    children: list[int] = []
    for _ in range(max(1, workers) - 1):
        pid = os.fork()
        if pid == 0:
            _die_with_parent()
            _run(store, host, port, settings)
            os._exit(0)
        children.append(pid)
    try:
        _run(store, host, port, settings)
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def _die_with_parent() -> None:
    """A worker must not outlive a parent that died without stopping it (kill -9): die the same way.
    A parent that exits cleanly sends SIGTERM itself."""
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _run(store: Store, host: str, port: int, settings: Settings) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        web.run_app(
            make_app(Store(store.root, store.allow_overwrite, store.max_upload), settings),
            host=host,
            port=port,
            access_log=None,
            print=None,
            reuse_port=True,
        )
