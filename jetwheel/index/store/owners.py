"""Who owns each name the index has ever held (PEP 541's model: a project belongs to whoever created
it), kept in the store's state directory as owners.json and changed only under the store's lock,
with the upload that creates the name.

A name is a project's canonical name, or `file:<filename>` for an artifact (an artifact is owned by
its whole file name: `pytorch-triton-3.2.0-src.tar.gz` is not project `pytorch`). The owner is a
user, or TRUSTED: the builder and admin roles together (the recipes' names, mirrored names, the
build's artifacts). A record outlives the files: deleting every file of a project does not free
its name for someone else, as on PyPI.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from jetwheel.index.store.durable import write_staged

OWNERS = "owners.json"
TRUSTED = ""  # the owner of a name the builders and admins hold together


@dataclass(frozen=True)
class Owner:
    user: str  # TRUSTED ("") or a user name
    source: str  # how the name came: "upload", "build", "mirror", "admin", "held" (before owners were kept)
    role: str = ""  # the creator's role

    def to_json(self) -> dict[str, str]:
        return {"user": self.user, "source": self.source, "role": self.role}


def artifact_key(filename: str) -> str:
    return f"file:{filename}"


def read_owners(state: Path) -> dict[str, Owner]:
    """The owners record ({} when there is none yet, or it cannot be read: then nothing is owned by
    a user, and the names the store holds count as the trusted roles' (see Claims.owner))."""
    try:
        doc = json.loads((state / OWNERS).read_bytes())
        return {str(k): Owner(str(v["user"]), str(v["source"]), str(v.get("role", ""))) for k, v in doc.items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}


def stage_owners(tmp: Path, owners: Mapping[str, Owner]) -> Path:
    """The record with a change, staged (durable.write_staged): renaming it over owners.json commits it."""
    return write_staged(tmp, json.dumps({k: v.to_json() for k, v in sorted(owners.items())}).encode())


def commit_owners(staged: Path, state: Path) -> None:
    os.replace(staged, state / OWNERS)
