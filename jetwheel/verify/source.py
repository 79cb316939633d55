"""What verify needs from an index, as a Protocol: the build side adapts its index client to it,
so verify imports nothing of the index."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from packaging.tags import Tag


@dataclass(frozen=True)
class Published:
    """A wheel on the index: the file pip would install, and the sha256 the index publishes for it.
    `trusted`: a builder published it, so the facts the index keeps for it may stand for reading it."""

    filename: str
    sha256: str
    trusted: bool = False


class WheelSource(Protocol):
    @property
    def url(self) -> str:
        """Where the wheels come from, for messages."""
        ...

    def find(self, requirement: str, tags: Sequence[Tag]) -> Published | None:
        """The wheel pip would install for `requirement` on a target accepting `tags`, best first."""
        ...

    def download(self, filename: str, dest: Path) -> Path:
        """The wheel's file, downloaded into `dest`."""
        ...

    def facts(self, filename: str) -> bytes | None:
        """The facts the index keeps for the wheel (gzip'd JSON, see wheel.py), if it keeps them."""
        ...
