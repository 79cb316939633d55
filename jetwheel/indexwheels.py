"""The build side's index client, as the `WheelSource` verify asks for (verify imports no index
code; see verify/source.py), and publishing a wheel with its facts."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.tags import Tag

from .index.client import IndexClient
from .verify.source import Published


@dataclass(frozen=True)
class IndexWheels:
    client: IndexClient

    @property
    def url(self) -> str:
        return self.client.url

    def find(self, requirement: str, tags: Sequence[Tag]) -> Published | None:
        filename = self.client.find_wheel(requirement, tags)
        if filename is None:
            return None
        info = self.client.file_info(filename) or {}
        return Published(filename, str(info.get("sha256", "")))

    def download(self, filename: str, dest: Path) -> Path:
        return self.client.download(filename, dest)

    def facts(self, filename: str) -> bytes | None:
        # IndexClient.facts (GET /api/facts/<filename>) arrives with the index's derived facts
        get = getattr(self.client, "facts", None)
        return get(filename) if get is not None else None


def upload_with_facts(client: IndexClient, path: Path, facts: bytes, **fields: Any) -> None:
    """Publish `path` with its verify facts (form field `jetwheel_facts`) where the client can send
    them, so the next verify against it reads no bytes of it; without them on an older client."""
    if "facts" in inspect.signature(client.upload).parameters:
        fields["facts"] = facts
    client.upload(path, **fields)
