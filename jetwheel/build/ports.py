"""What the engine needs of the index, as small interfaces: look up a cached build, find a step's
sources, find the wheels a built one is verified against, publish a result. The engine takes these,
not the concrete client: `IndexPorts` gives all four through one `IndexClient` (and the local
source directory), and a test or another backend may give any of them otherwise."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from jetwheel.build.indexwheels import IndexWheels
from jetwheel.index.client.client import IndexClient, Progress
from jetwheel.sources.fetch import Lookup
from jetwheel.verify.source import WheelSource


class CachedBuilds(Protocol):
    def cached(self, cache_key: str) -> str | None:
        """The file already published for this cache key, if any."""
        ...


class SourceFinder(Protocol):
    def lookup(self, progress: Progress | None) -> Lookup:
        """Where a step's sources are looked for (local directory, index, upstream), in that order."""
        ...


class DependencyWheels(Protocol):
    def wheels(self, progress: Progress | None) -> WheelSource:
        """The wheels a built one will be installed with, for verify."""
        ...


class Publisher(Protocol):
    @property
    def simple_url(self) -> str:
        """The index a step's build installs its dependencies from (what was published before it)."""
        ...

    def upload(
        self,
        path: Path,
        *,
        provenance: Mapping[str, object],
        verify: Mapping[str, object],
        facts: bytes,
        progress: Progress | None = None,
    ) -> None:
        """Publish one wheel with its provenance, verify report and facts."""
        ...


@dataclass(frozen=True)
class IndexPorts:
    """The four through one index client; `sources`: the local source archives, tried first."""

    client: IndexClient
    sources: Path | None = None

    def cached(self, cache_key: str) -> str | None:
        return self.client.cached(cache_key)

    def lookup(self, progress: Progress | None) -> Lookup:
        return Lookup(self.sources, self.client, progress=progress)

    def wheels(self, progress: Progress | None) -> WheelSource:
        return IndexWheels(self.client, progress)

    @property
    def simple_url(self) -> str:
        return self.client.simple_url

    def upload(
        self,
        path: Path,
        *,
        provenance: Mapping[str, object],
        verify: Mapping[str, object],
        facts: bytes,
        progress: Progress | None = None,
    ) -> None:
        self.client.upload(path, provenance=dict(provenance), verify=dict(verify), facts=facts, progress=progress)
