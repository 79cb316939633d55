"""Publishing to the index: the legacy upload API (twine, the client), streamed to the store's
staging, checked, and committed whole or not at all. Who may publish what is decided here: a name
the recipes own takes a builder (or admin), a new project that looks like one already here is
refused, only an admin may overwrite; every file records the role that published it."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from packaging.utils import canonicalize_name

from jetwheel.errors import AlreadyExists, JetwheelError, RefusedByPolicy, UploadRejected
from jetwheel.index.server.auth import RANK
from jetwheel.index.server.guard import ROLE, error, refused
from jetwheel.index.server.upload_form import BODY_IDLE, MAX_FACTS, json_field, read_parts
from jetwheel.index.store.names import confusable_with
from jetwheel.index.store.records import Hashes
from jetwheel.index.store.store import Store
from jetwheel.index.store.validate import check_artifact_name, parse_filename
from jetwheel.wire import ADMIN, BUILDER, UPLOAD

log = logging.getLogger("jetwheel.index")
GZIP_MAGIC = b"\x1f\x8b"


class Uploads:
    def __init__(self, store: Store, owned: Callable[[], frozenset[str]], allow_overwrite: bool) -> None:
        self.store = store
        self.owned = owned
        self.allow_overwrite = allow_overwrite  # an admin may replace a file

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
        except UploadRejected as e:
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
                os.fsync(f.fileno())
            if has_facts:
                with open(facts_tmp, "rb") as f:
                    if f.read(2) != GZIP_MAGIC:
                        raise UploadRejected("form field 'jetwheel_facts' must be gzip'd JSON")
            if fields.get(":action", "file_upload") != "file_upload":
                raise UploadRejected(f"unsupported :action {fields.get(':action')!r}")
            artifact = fields.get("jetwheel_artifact") == "1"
            self._may_publish(filename, artifact, role)
            if not artifact and fields.get("name") and "-" in filename:
                claimed = canonicalize_name(fields["name"])
                if claimed != canonicalize_name(filename.split("-", 1)[0]):
                    raise UploadRejected(f"form name {fields['name']!r} does not match file {filename!r}")
            extras = {k: json_field(fields, f"jetwheel_{k}") for k in ("provenance", "verify")}
            info = await asyncio.to_thread(
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
            raise RefusedByPolicy(
                f"{project}: a name the recipes own; only a builder or admin may publish it (this user is {role})"
            )
        projects = [] if artifact else self.store.projects()  # each call regroups every file
        if not artifact and project not in projects:
            other = confusable_with(project, [*projects, *owned])
            if other is not None:
                raise UploadRejected(
                    f"{project!r} looks like the project {other!r} (same Unicode TR39 skeleton): refused"
                )
