"""The build side's index client, as the `WheelSource` verify asks for (verify imports no index
code; see verify/source.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.tags import Tag

from jetwheel.index.client.client import IndexClient, Progress
from jetwheel.verify.source import Published
from jetwheel.wire import TRUSTED


@dataclass(frozen=True)
class IndexWheels:
    client: IndexClient
    progress: Progress | None = None  # told of each download's bytes

    @property
    def url(self) -> str:
        return self.client.url

    def find(self, requirement: str, tags: Sequence[Tag]) -> Published | None:
        filename = self.client.find_wheel(requirement, tags)
        if filename is None:
            return None
        info = self.client.file_info(filename) or {}
        return Published(filename, str(info.get("sha256", "")), info.get("published_by") in TRUSTED)

    def download(self, filename: str, dest: Path) -> Path:
        return self.client.download(filename, dest, self.progress)

    def facts(self, filename: str) -> bytes | None:
        return self.client.facts(filename)
