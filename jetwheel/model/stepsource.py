"""A build step's source as a typed value: where its tree comes from, the pins it is checked
against, and the further pinned trees (sub-sources) its build finds through environment variables.

The plan makes these from a recipe; source_fetch.py fetches them, preflight checks them, the engine
records them as provenance. Their JSON form (`to_json`) is what the plan prints and what the cache
key hashes, so it holds only what is set, and patches by name (their bytes are in the recipe's
digest)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

SourceKind = Literal["git", "url", "path"]
SUB_DIR = "sub"  # sub-source trees lie in $JW_WORK/sub/<name>


@dataclass(frozen=True)
class SubSource:
    """A pinned source tree besides the main one (vLLM's CMake takes CUTLASS, flash-attention and
    FlashMLA from VLLM_CUTLASS_SRC_DIR, VLLM_FLASH_ATTN_SRC_DIR and FLASH_MLA_SRC_DIR instead of
    fetching them from GitHub). Its archive is pinned byte for byte by sha256 and taken from the
    local source directory, then the index, then `url` when the recipe names one."""

    name: str
    env: str  # the variable through which the build finds the unpacked tree
    repo: str  # the git repository the archive was packed from (provenance)
    commit: str  # the commit of that repository the archive holds
    archive: str  # its file name, in a source directory and on the index
    sha256: str
    url: str = ""  # upstream URL of this very archive; "" when only a source directory or an index has it
    patches: tuple[str, ...] = ()  # absolute paths, applied in order to the unpacked tree

    @property
    def workdir(self) -> str:
        """Where the tree lies, relative to the step's work directory."""
        return f"{SUB_DIR}/{self.name}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "env": self.env,
            "repo": self.repo,
            "commit": self.commit,
            "archive": self.archive,
            "sha256": self.sha256,
        }
        if self.url:
            out["url"] = self.url
        if self.patches:
            out["patches"] = [Path(p).name for p in self.patches]
        return out


@dataclass(frozen=True)
class StepSource:
    """The main source: a git ref (with commit and archive pins), an sdist URL (sha256), or a
    local tree (its digest); and the sub-sources."""

    kind: SourceKind
    url: str = ""  # git repository or sdist URL
    ref: str = ""  # git ref
    commit: str = ""  # git: the commit the ref must resolve to
    sha256: str = ""  # of the sdist, or of the reproducible archive of a git source
    submodules: bool = False
    path: str = ""  # a local tree
    digest: str = ""  # of that tree
    subs: tuple[SubSource, ...] = ()

    def to_json(self) -> dict[str, Any]:
        if self.kind == "git":
            out: dict[str, Any] = {"kind": "git", "url": self.url, "ref": self.ref, "submodules": self.submodules}
            out.update((k, v) for k, v in (("commit", self.commit), ("sha256", self.sha256)) if v)
        elif self.kind == "url":
            out = {"kind": "url", "url": self.url, "sha256": self.sha256}
        else:
            out = {"kind": "path", "path": self.path, "digest": self.digest}
        if self.subs:
            out["subs"] = [s.to_json() for s in self.subs]
        return out
