"""What the index's store records of each file, and the digests computed as a file's bytes stream
in (read once: the upload's checks and the record share them)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from packaging.utils import NormalizedName


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
    provenance: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    verify: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @classmethod
    def from_record(cls, filename: str, meta: dict[str, Any]) -> StoredFile:
        """The file as its record (the store's .jetwheel/meta/<file>.json) describes it."""
        return cls(
            filename=filename,
            project=meta.get("project", ""),
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

    sha256: Any = field(default_factory=hashlib.sha256)
    md5: Any = field(default_factory=hashlib.md5)
    size: int = 0

    def update(self, chunk: bytes) -> None:
        self.sha256.update(chunk)
        self.md5.update(chunk)
        self.size += len(chunk)
