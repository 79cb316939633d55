"""Talk to a jetwheel index over HTTP: publish (the legacy upload API, as twine does), look up the
build cache, read the PEP 691 JSON pages and download files. Standard library HTTP only."""

from __future__ import annotations

import base64
import json
import os
import secrets
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

from packaging.requirements import Requirement
from packaging.tags import Tag
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from jetwheel import wire
from jetwheel.digest import chunks, sha256_file
from jetwheel.errors import PublishError
from jetwheel.wire import JSON_V1, TRUSTED

# told (what, bytes done, bytes in all) while a file moves: an upload's or a download's progress
Progress = Callable[[str, int, int], None]


class IndexClient:
    def __init__(self, url: str, user: str = "", password: str = "") -> None:
        self.url = url.rstrip("/")
        if self.url.endswith(wire.SIMPLE.rstrip("/")):
            self.url = self.url[: -len(wire.SIMPLE.rstrip("/"))]
        self._auth = ("Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()) if user else ""

    @property
    def simple_url(self) -> str:
        return self.url + wire.SIMPLE

    def package_url(self, filename: str) -> str:
        """Where the index serves `filename` (a wheel, sdist or artifact), a stable URL."""
        return self.url + wire.PACKAGE.format(filename=filename)

    def _open(self, req: urllib.request.Request, timeout: float = 60) -> Any:
        if self._auth:
            req.add_header("Authorization", self._auth)
        return urllib.request.urlopen(req, timeout=timeout)

    def _get(self, path: str, accept: str = "*/*") -> bytes | None:
        """The body at `path`; None for a 404, PublishError for any other failure."""
        try:
            with self._open(urllib.request.Request(self.url + path, headers={"Accept": accept})) as r:
                return bytes(r.read())
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise PublishError(f"{self.url}{path}: HTTP {e.code} {_reason(e)}") from None
        except OSError as e:
            raise PublishError(f"index {self.url} unreachable: {e}") from None

    def _get_json(self, path: str, accept: str = "application/json") -> dict[str, Any] | None:
        body = self._get(path, accept)
        if body is None:
            return None
        try:
            return dict(json.loads(body))
        except (ValueError, TypeError):  # JSON that is not an object, or no JSON at all
            raise PublishError(f"{self.url}{path}: not a jetwheel index's answer (is the URL right?)") from None

    def cached(self, cache_key: str) -> str | None:
        """The filename already published for this cache key, if any."""
        doc = self._get_json(wire.CACHE.format(key=cache_key))
        return str(doc["filename"]) if doc else None

    def file_info(self, filename: str) -> dict[str, Any] | None:
        return self._get_json(wire.FILE.format(filename=filename))

    def status(self) -> wire.Status:
        doc = self._get_json(wire.STATUS)
        if doc is None:
            raise PublishError(f"{self.url} has no {wire.STATUS}: is it a jetwheel index?")
        return cast(wire.Status, doc)

    def projects(self) -> list[str]:
        doc = self._get_json(wire.SIMPLE, accept=JSON_V1) or {}
        return [str(p["name"]) for p in doc.get("projects", [])]

    def project(self, name: str) -> dict[str, Any] | None:
        return self._get_json(wire.PROJECT.format(project=canonicalize_name(name)), accept=JSON_V1)

    def upload(  # params: the legacy upload API's fields, each its own keyword
        self,
        path: Path,
        *,
        provenance: dict[str, Any] | None = None,
        verify: dict[str, Any] | None = None,
        artifact: bool = False,
        facts: bytes | None = None,
        progress: Progress | None = None,
        mirror: bool = False,
    ) -> None:
        """Publish one file (`mirror`: as a mirror run, which may create a name the upstream has).
        The body streams from disk; nothing is held whole in memory.
        `facts`: gzip'd JSON about the file (at most 64 MiB), kept by the index once the file is
        stored and read back with facts()."""
        fields = {":action": "file_upload", "protocol_version": "1", "sha256_digest": sha256_file(path)}
        if mirror:
            fields["jetwheel_mirror"] = "1"
        if artifact:
            fields["jetwheel_artifact"] = "1"
        else:
            try:
                name, version, _build, _tags = parse_wheel_filename(path.name)
            except InvalidWheelFilename as e:
                raise PublishError(f"{path.name}: not a wheel filename ({e})") from None
            fields.update(name=name, version=str(version), filetype="bdist_wheel")
        if provenance:
            fields["jetwheel_provenance"] = json.dumps(provenance)
        if verify:
            fields["jetwheel_verify"] = json.dumps(verify)
        req = _multipart_request(self.url + wire.UPLOADS[0], fields, facts, path, progress)
        try:
            with self._open(req, timeout=600):
                pass
        except urllib.error.HTTPError as e:
            raise PublishError(f"index refused {path.name}: HTTP {e.code} {_reason(e)}") from None
        except OSError as e:
            raise PublishError(f"index {self.url} unreachable while uploading {path.name}: {e}") from None

    def facts(self, filename: str) -> bytes | None:
        """The gzip'd facts uploaded with the file, as they were sent; None when it has none."""
        return self._get(wire.FACTS.format(filename=quote(filename)))

    def yank(self, filename: str, reason: str = "", undo: bool = False) -> None:
        self._send_json((wire.UNYANK if undo else wire.YANK).format(filename=filename), {"reason": reason})

    def delete(self, filename: str) -> None:
        self._send_json(wire.FILE.format(filename=filename), {}, method="DELETE")

    def _send_json(self, path: str, body: dict[str, Any], method: str = "POST") -> None:
        req = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with self._open(req):
                pass
        except urllib.error.HTTPError as e:
            raise PublishError(f"{self.url}{path}: HTTP {e.code} {_reason(e)}") from None
        except OSError as e:
            raise PublishError(f"index {self.url} unreachable: {e}") from None

    def download(self, filename: str, dest: Path, progress: Progress | None = None) -> Path:
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / filename
        tmp = dest / f".{filename}.part"
        try:
            with (
                self._open(urllib.request.Request(self.package_url(filename))) as r,
                open(tmp, "wb") as f,
            ):
                size, got = int(r.headers.get("Content-Length") or 0), 0
                for chunk in chunks(r):
                    f.write(chunk)
                    got += len(chunk)
                    if progress:
                        progress(f"downloading {filename}", got, size)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise PublishError(f"could not download {filename} from {self.url}: {e}") from None
        os.replace(tmp, target)
        return target

    def find_wheel(self, requirement: str, tags: Iterable[Tag]) -> str | None:
        """The best wheel on the index for a requirement and a target's tags (newest version first,
        then one a builder published, then the most specific tag), ignoring yanked files unless
        pinned with ==. A name that sorts last never beats a builder's file of the same version."""
        req = Requirement(requirement)
        doc = self.project(req.name)
        if not doc:
            return None
        priority = {t: i for i, t in enumerate(tags)}
        pinned = any(s.operator in ("==", "===") for s in req.specifier)
        best: tuple[Version, bool, int, str] | None = None
        for f in doc.get("files", []):
            fn = f["filename"]
            if not fn.endswith(".whl") or (f.get("yanked") and not pinned):
                continue
            _, version, _, ftags = parse_wheel_filename(fn)
            if not req.specifier.contains(version, prereleases=True):
                continue
            rank = min((priority[t] for t in ftags if t in priority), default=None)
            if rank is None:
                continue
            cand = (version, f.get("_jetwheel-published-by") in TRUSTED, -rank, fn)
            if best is None or cand > best:
                best = cand
        return best[3] if best else None


def _reason(e: urllib.error.HTTPError) -> str:
    try:
        return e.read().decode("utf-8", "replace").strip().splitlines()[0]
    except (OSError, IndexError):
        return str(e.reason)


def _multipart_request(
    url: str, fields: dict[str, str], facts: bytes | None, path: Path, progress: Progress | None
) -> urllib.request.Request:
    """The legacy upload's multipart/form-data POST: the fields, the facts, then the file streamed
    from disk (its length known up front, so nothing is held whole in memory)."""
    boundary = secrets.token_hex(16)
    head = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    )
    if facts is not None:
        head += (
            (
                f"--{boundary}\r\nContent-Disposition: form-data; "
                'name="jetwheel_facts"; filename="facts.json.gz"\r\n'
                "Content-Type: application/gzip\r\n\r\n"
            ).encode()
            + facts
            + b"\r\n"
        )
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="content"; filename="{path.name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    size = len(head) + os.path.getsize(path) + len(tail)

    def body() -> Iterator[bytes]:
        yield head
        sent, total = 0, os.path.getsize(path)
        with open(path, "rb") as f:
            for chunk in chunks(f):
                yield chunk
                sent += len(chunk)
                if progress:
                    progress(f"uploading {path.name}", sent, total)
        yield tail

    return urllib.request.Request(
        url,
        data=body(),
        method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}", "Content-Length": str(size)},
    )
