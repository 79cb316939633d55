"""The one way a file enters the store for every publisher: an upload (twine, the client), a mirror
run and an artifact (upload-artifact) all come through `publish`, which applies the index's policy
(who may publish what: ownership.py; a mirror run's and an artifact's names) and then the integrity
checks and the commit (Store.add: JSON, name, bounds, digests, the wheel itself).

Only whether the upstream index has a new name is asked outside (it is a network question, the
server's): `upstream_question` says which name, if any, the answer is needed for."""

from __future__ import annotations

from collections.abc import Callable

from packaging.utils import canonicalize_name

from jetwheel.errors import RefusedByPolicy, UploadRejected
from jetwheel.index.store.catalog import Catalog
from jetwheel.index.store.ownership import Rules, Uploader, claim, name_key, owner_of
from jetwheel.index.store.records import StoredFile, Upload
from jetwheel.index.store.store import Store
from jetwheel.index.store.validate import check_artifact_name
from jetwheel.wire import ADMIN


def upstream_question(catalog: Catalog, upload: Upload, uploader: Uploader, rules: Rules) -> str | None:
    """The name whose presence on the upstream index decides whether `uploader` may create it here
    (dependency confusion), or None when the answer does not matter: the name is held already, the
    file is an artifact, or an admin or a mirror run publishes."""
    if upload.artifact or uploader.role == ADMIN or uploader.mirror:
        return None
    key = name_key(upload.filename, artifact=False)
    return key if owner_of(key, catalog.owners(), set(catalog.projects()), rules) is None else None


def publish(  # params: the file, who sends it, the rules, the upstream's answer, and how the commit may go
    store: Store,
    upload: Upload,
    uploader: Uploader,
    rules: Rules,
    *,
    upstream_has: bool = False,
    overwrite: bool = False,
    stop: Callable[[], bool] = lambda: False,
) -> StoredFile:
    """Add `upload` to the store if the policy lets `uploader` publish it and it passes every check;
    raises a StoreError otherwise, the store untouched. Ownership is decided here first and again
    under the store's lock (two first uploads of one name cannot both win). `upstream_has`: the
    upstream's answer for upstream_question's name (False when there was none to ask)."""
    filename = upload.filename
    if uploader.mirror and not uploader.trusted:
        raise RefusedByPolicy(f"a mirror run needs a builder or admin (this user is {uploader.role})")
    if upload.artifact:
        check_artifact_name(filename, sdist_like=uploader.trusted)
    decide = claim(uploader, filename, name_key(filename, upload.artifact), rules, upstream_has)
    decide(store)  # refused here already, the store untouched; decided again under the lock
    named = upload.name and "-" in filename and not upload.artifact
    if named and canonicalize_name(upload.name) != canonicalize_name(filename.split("-", 1)[0]):
        raise UploadRejected(f"form name {upload.name!r} does not match file {filename!r}")
    return store.add(upload, published_by=uploader.role, overwrite=overwrite, claim=decide, stop=stop)
