# ruff: noqa: RUF002  (a look-alike letter in the docs, on purpose)
"""Who may add a file to a name: PEP 541's model, decided under the store's lock (Claim; publish.py applies it).

- A name belongs to whoever created it: a user, or the builder and admin roles together for the
  recipes' names, the build's artifacts, mirrored names and names a builder or admin created.
  Only the owner (or an admin) adds files to a user's project; only builders and admins to theirs.
- An artifact is owned by its whole file name. The artifacts the build consumes (the NVPL tarball,
  source and sub-source archives: every `*-src.tar.gz`, and the names the recipes and profiles
  list) and every file of a recipe's name are builders' and admins' only.
- A new name the upstream index has (dependency confusion) is created only by an admin or a
  mirror run (a builder or admin uploading with jetwheel_mirror=1).
- A new project that looks like a name held, owned or created before (TR39 skeletons) is refused,
  except that a builder, admin or mirror may bring a real name a user's look-alike came first to:
  a squatter's `filеlock` does not lock out `filelock`.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass

from jetwheel import wire
from jetwheel.errors import RefusedByPolicy, UploadRejected
from jetwheel.index.store.catalog import Catalog
from jetwheel.index.store.names import confusable_with
from jetwheel.index.store.owners import TRUSTED, Owner, artifact_key
from jetwheel.index.store.store import Claim
from jetwheel.index.store.validate import parse_filename
from jetwheel.wire import ADMIN

SOURCE_ARCHIVE = "-src.tar.gz"  # sources.archives: every recipe source archive is named <name>-<pin>-src.tar.gz


@dataclass(frozen=True)
class Uploader:
    user: str
    role: str
    mirror: bool = False  # a mirror run: counts only for a builder or admin

    @property
    def trusted(self) -> bool:
        return self.role in wire.TRUSTED  # a builder or admin


@dataclass(frozen=True)
class Rules:
    owned: Set[str]  # names the recipes (and the config) own
    artifacts: Set[str]  # artifact file names the build consumes


def name_key(filename: str, artifact: bool) -> str:
    """The name a file is added to: its project, or for an artifact its whole file name."""
    return artifact_key(filename) if artifact else parse_filename(filename)[0]


def builders_only(filename: str, key: str, rules: Rules) -> bool:
    return key in rules.owned or filename in rules.artifacts or filename.endswith(SOURCE_ARCHIVE)


def owner_of(key: str, owners: dict[str, Owner], held: Set[str], rules: Rules) -> Owner | None:
    """The name's owner; a name the store holds from before owners were recorded (or files put in
    by hand) is the trusted roles', and so is a name the recipes own."""
    found = owners.get(key)
    if found is None and (key in held or key in rules.owned):
        return Owner(TRUSTED, "held")
    return found


def claim(uploader: Uploader, filename: str, key: str, rules: Rules, upstream_has: bool) -> Claim:
    """The check Store.add runs under its lock: raises UploadRejected, or returns the new name's record."""

    def decide(catalog: Catalog) -> tuple[str, Owner] | None:
        owners = catalog.owners()
        held = set(catalog.projects())
        if builders_only(filename, key, rules) and not uploader.trusted:
            what = "an artifact the build consumes" if key.startswith("file:") else "a name the recipes own"
            raise RefusedByPolicy(
                f"{filename}: {what}; only a builder or admin may publish it (this user is {uploader.role})"
            )
        current = owner_of(key, owners, held, rules)
        if current is not None:
            _may_add(current, uploader, key)
            return None
        if upstream_has and not (uploader.role == ADMIN or (uploader.trusted and uploader.mirror)):
            raise RefusedByPolicy(
                f"{key}: the upstream index has this project; only an admin or a mirror run may create it here "
                "(dependency confusion)",
            )
        if not key.startswith("file:"):
            _not_a_look_alike(key, uploader, owners, held, rules)
        return key, new_owner(key, uploader, rules)

    return decide


def new_owner(key: str, uploader: Uploader, rules: Rules) -> Owner:
    if not uploader.trusted:
        return Owner(uploader.user, "upload", uploader.role)
    source = "mirror" if uploader.mirror else "build" if key in rules.owned else uploader.role
    return Owner(TRUSTED, source, uploader.role)


def _may_add(current: Owner, uploader: Uploader, key: str) -> None:
    if current.user == TRUSTED:
        if not uploader.trusted:
            raise RefusedByPolicy(
                f"{key}: held by the builders and admins ({current.source}); "
                f"only a builder or admin may add files (this user is {uploader.role})",
            )
        return
    if current.user != uploader.user and uploader.role != ADMIN:
        raise RefusedByPolicy(f"{key}: a project of user {current.user!r}; only its owner or an admin may add files")


def _not_a_look_alike(key: str, uploader: Uploader, owners: dict[str, Owner], held: Set[str], rules: Rules) -> None:
    known = {k for k in owners if not k.startswith("file:")} | held | set(rules.owned)
    other = confusable_with(key, sorted(known))
    if other is None:
        return
    theirs = owner_of(other, owners, held, rules)
    if uploader.trusted and theirs is not None and theirs.user != TRUSTED:
        return  # a real name brought by a builder, admin or mirror: a user's look-alike came first
    raise UploadRejected(f"{key!r} looks like the project {other!r} (same Unicode TR39 skeleton): refused")
