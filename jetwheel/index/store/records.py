"""What the index's store records of each file, the digests computed as a file's bytes stream in
(read once: the upload's checks and the record share them), and a file on its way in (Upload)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from packaging.utils import NormalizedName

if TYPE_CHECKING:
    from _hashlib import HASH

# A JSON object a publisher sent with its file (provenance, verify report), kept as sent: the
# server reads a few keys of it (each where it is read) and hands the rest on as it came
JsonObject = dict[str, object]


class FindingJson(TypedDict, total=False):
    """A finding in a verify report, as verify.report.Finding writes it."""

    check: str
    severity: str  # "error", "warning", "info"
    file: str
    detail: str
    fix: str


class VerifyJson(TypedDict, total=False):
    """A verify report as a builder's publish sends it (verify.report.Report.to_json). What anyone
    else sends is kept as sent and is their word only: readers trust it by its publisher's role."""

    wheel: str
    passed: bool
    checks: list[str]
    failing: list[str]
    findings: list[FindingJson]
    facts: JsonObject


class Record(TypedDict, total=False):
    """A file's record, as the store keeps it (.jetwheel/meta/<file>.json). Every record the store
    writes has size, sha256 and upload_time; a distribution's name and METADATA give project,
    version, requires_python and metadata_sha256 (catalog.describe); an artifact's are ""."""

    size: int
    sha256: str
    upload_time: float
    project: str
    version: str
    requires_python: str
    metadata_sha256: str  # absent when there is no PEP 658 metadata (sdists)
    yanked: str | None
    published_by: str
    provenance: JsonObject
    verify: VerifyJson


@dataclass(frozen=True)
class StoredFile:
    filename: str
    project: NormalizedName
    version: str
    size: int
    sha256: str
    upload_time: float
    requires_python: str
    metadata_sha256: str  # "" when there is no PEP 658 metadata (sdists)
    yanked: str | None  # None, or the reason ("" is allowed: yanked without reason)
    published_by: str = ""  # the uploader's role ("": a file put in by hand, trusted by no one)
    provenance: JsonObject = field(default_factory=dict, hash=False, compare=False)
    verify: VerifyJson = field(default_factory=lambda: VerifyJson(), hash=False, compare=False)

    @classmethod
    def from_record(cls, filename: str, meta: Record) -> StoredFile:
        """The file as its record (the store's .jetwheel/meta/<file>.json) describes it."""
        return cls(
            filename=filename,
            project=NormalizedName(meta.get("project", "")),
            version=meta.get("version", ""),
            size=meta["size"],
            sha256=meta["sha256"],
            upload_time=meta["upload_time"],
            requires_python=meta.get("requires_python", ""),
            metadata_sha256=meta.get("metadata_sha256", ""),
            yanked=meta.get("yanked"),
            published_by=str(meta.get("published_by", "")),
            provenance=meta.get("provenance", {}),
            verify=meta.get("verify", {}),
        )


@dataclass
class Hashes:
    """Digests computed while a body streams in, so the bytes are read once."""

    sha256: HASH = field(default_factory=hashlib.sha256)
    md5: HASH = field(default_factory=hashlib.md5)
    size: int = 0

    def update(self, chunk: bytes) -> None:
        self.sha256.update(chunk)
        self.md5.update(chunk)
        self.size += len(chunk)


@dataclass(frozen=True)
class Upload:
    """A file on its way into the store (publish.publish, Store.add): staged in the store's tmp/,
    with what its publisher sent along, unchecked."""

    staged: Path
    filename: str
    hashes: Hashes
    sha256_digest: str = ""  # the digests the publisher claims ("": none claimed)
    md5_digest: str = ""
    name: str = ""  # the project the publisher names ("": none)
    artifact: bool = False  # served at a stable URL, listed under no project
    facts: Path | None = None  # a build's facts, staged (gzip'd JSON)
    provenance: str | None = None  # JSON objects as sent (None: not sent), checked on the way in
    verify: str | None = None
