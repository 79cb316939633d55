"""Render the simple repository API: PEP 503 HTML and PEP 691 JSON, with PEP 592 yanks,
PEP 658/714 core metadata, PEP 700 versions/size/upload-time. Pure functions of the store's files."""

from __future__ import annotations

import html
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import quote

from packaging.utils import NormalizedName, parse_sdist_filename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from jetwheel.index.store.records import StoredFile
from jetwheel.wire import HTML_V1, JSON_V1

API_VERSION = "1.1"  # PEP 700


def file_url(filename: str, prefix: str = "../../packages/") -> str:
    return prefix + quote(filename)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1e6):06d}Z"


def _version_of(f: StoredFile) -> Version | None:
    try:
        if f.filename.endswith(".whl"):
            return parse_wheel_filename(f.filename)[1]
        return parse_sdist_filename(f.filename)[1]
    except (ValueError, InvalidVersion):
        return None


def root_html(projects: Iterable[str]) -> bytes:
    links = "\n".join(f'    <a href="{quote(p)}/">{html.escape(p)}</a><br/>' for p in projects)
    return (
        f'<!DOCTYPE html>\n<html>\n  <head>\n    <meta name="pypi:repository-version" content="{API_VERSION}">\n'
        f"    <title>Simple index</title>\n  </head>\n  <body>\n{links}\n  </body>\n</html>\n"
    ).encode()


def root_json(projects: Iterable[str]) -> bytes:
    return json.dumps({"meta": {"api-version": API_VERSION}, "projects": [{"name": p} for p in projects]}).encode()


def project_html(project: str, files: Sequence[StoredFile], prefix: str = "../../packages/") -> bytes:
    rows = []
    for f in files:
        attrs = [f'href="{file_url(f.filename, prefix)}#sha256={f.sha256}"']
        if f.requires_python:
            attrs.append(f'data-requires-python="{html.escape(f.requires_python)}"')
        if f.metadata_sha256:
            attrs.append(f'data-dist-info-metadata="sha256={f.metadata_sha256}"')
            attrs.append(f'data-core-metadata="sha256={f.metadata_sha256}"')
        if f.yanked is not None:
            attrs.append(f'data-yanked="{html.escape(f.yanked)}"')
        rows.append(f"    <a {' '.join(attrs)}>{html.escape(f.filename)}</a><br/>")
    body = "\n".join(rows)
    return (
        f'<!DOCTYPE html>\n<html>\n  <head>\n    <meta name="pypi:repository-version" content="{API_VERSION}">\n'
        f"    <title>Links for {html.escape(project)}</title>\n  </head>\n  <body>\n"
        f"    <h1>Links for {html.escape(project)}</h1>\n{body}\n  </body>\n</html>\n"
    ).encode()


def project_json(project: str, files: Sequence[StoredFile], prefix: str = "../../packages/") -> bytes:
    entries: list[dict[str, object]] = []
    versions: set[Version] = set()
    for f in files:
        v = _version_of(f)
        if v is not None:
            versions.add(v)
        e: dict[str, object] = {
            "filename": f.filename,
            "url": file_url(f.filename, prefix),
            "hashes": {"sha256": f.sha256},
            "requires-python": f.requires_python or None,
            "size": f.size,
            "upload-time": _iso(f.upload_time),
            "yanked": (f.yanked or True) if f.yanked is not None else False,
            # PEP 691 keeps keys with a leading underscore for the index: the uploader's role, by
            # which clients decide whether the file may stand for a build and its facts be trusted
            "_jetwheel-published-by": f.published_by,
        }
        if f.metadata_sha256:
            # PEP 714: only the new key. pip 22.3-23.0 (Debian bookworm's is 23.0.1) crashes on a dict
            # under the old "dist-info-metadata" key, which is why the key was renamed.
            e["core-metadata"] = {"sha256": f.metadata_sha256}
        entries.append(e)
    doc = {
        "meta": {"api-version": API_VERSION},
        "name": project,
        "files": entries,
        "versions": [str(v) for v in sorted(versions)],
    }
    return json.dumps(doc).encode()


def negotiate(accept: str) -> str | None:
    """Pick JSON or HTML per PEP 691 from an Accept header; None when nothing we serve is acceptable."""
    if not accept:
        return HTML_V1
    best: tuple[float, int, str] | None = None
    order = {JSON_V1: 0, HTML_V1: 1, "text/html": 2}
    for part in accept.split(","):
        fields = [x.strip() for x in part.split(";")]
        mime, q = fields[0].lower(), 1.0
        for p in fields[1:]:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        if mime in ("*/*", "application/*", "text/*"):
            mime = HTML_V1 if mime != "application/*" else JSON_V1
        if mime not in order or q <= 0:
            continue
        cand = (q, -order[mime], mime)
        if best is None or cand > best:
            best = cand
    if best is None:
        return None
    return JSON_V1 if best[2] == JSON_V1 else (HTML_V1 if best[2] == HTML_V1 else "text/html")


def render_all(projects: Mapping[NormalizedName, Sequence[StoredFile]]) -> dict[tuple[str, str], bytes]:
    """Every simple page in both forms, keyed by (project or "", "json" | "html")."""
    pages: dict[tuple[str, str], bytes] = {("", "html"): root_html(projects), ("", "json"): root_json(projects)}
    for name, files in projects.items():
        pages[(name, "html")] = project_html(name, files)
        pages[(name, "json")] = project_json(name, files)
    return pages
