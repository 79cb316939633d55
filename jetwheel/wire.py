"""What the index's client and server agree on over HTTP: media types, the paths of the API and the
role names. Both sides import this module and nothing else of each other's, so it imports nothing
(a client that publishes must not load the server's pages, store and validation to do so)."""

from __future__ import annotations

from typing import TypedDict

JSON_V1 = "application/vnd.pypi.simple.v1+json"  # PEP 691
HTML_V1 = "application/vnd.pypi.simple.v1+html"

# paths: a route's pattern on the server, a template the client fills in with str.format
HEALTH = "/health"
STATUS = "/api/status"
SIMPLE = "/simple/"
PROJECT = "/simple/{project}/"
PACKAGE = "/packages/{filename}"
FILE = "/api/files/{filename}"
FACTS = "/api/facts/{filename}"
CACHE = "/api/cache/{key}"
UPLOADS = ("/", "/legacy/")  # the legacy upload API: twine posts to the URL it is given; the client to "/"
YANK = "/api/files/{filename}/yank"
UNYANK = "/api/files/{filename}/unyank"

# roles, ordered by what they may do (index.auth)
PUBLIC, READ, UPLOAD, BUILDER, ADMIN = "public", "read", "upload", "builder", "admin"
TRUSTED = (BUILDER, ADMIN)  # whose files may stand for a build: owned names, cache keys, facts


class Status(TypedDict):
    """The index's summary at STATUS (what `inv status` shows)."""

    projects: int
    files: int
    bytes: int
    failing_verify: list[str]  # the files whose verify report failed
    unverified: int  # files of a project that came without a verify report
    yanked: int
    disk_free: int
    disk_total: int
