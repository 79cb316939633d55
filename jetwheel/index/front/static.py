"""The tree nginx serves reads from, kept rendered as the store changes (the nginx front: front.py).

The layout is index.export's (simple/[<project>/]index.{html,json}, packages/<file>[.metadata];
files hard-linked from the store, so a 1 GiB wheel costs no copy), plus index.v1html beside each
index.html: the same page under the name nginx gives the PEP 691 HTML content type.

A serving store calls `follow` after every committed change, under its lock (the server registers
it with `store.on_change`; nothing happens while no front serves the store): only the changed file, its
project's pages and the root pages are written. Every file lands whole by rename, so a reader sees
the page before the change or after it, never a torn one. A change the hook did not render (a file
copied into the store by hand, a failed write) is caught by `repair`, which renders a whole new
tree beside the current one and switches a symlink to it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from pathlib import Path

from packaging.utils import NormalizedName

from jetwheel.errors import UploadRejected
from jetwheel.index.front.export import export, place
from jetwheel.index.server import pages
from jetwheel.index.store.catalog import Catalog
from jetwheel.index.store.validate import parse_filename

log = logging.getLogger("jetwheel.index.static")
FORMS = {"json": "index.json", "html": "index.html"}
V1HTML = "index.v1html"


def tree(store: Catalog) -> Path:
    """The tree's path (a symlink to the current rendering); absent while no front serves."""
    return store.state_path("front")


def _fingerprint(store: Catalog) -> str:
    """What the tree must be rendered from: the store's generation, looked at now."""
    return " ".join(str(n) for n in store.generation(fresh=True))


def _mark(store: Catalog) -> None:
    _replace(store.state_path("front.rendered"), _fingerprint(store).encode())


def _replace(path: Path, data: bytes) -> bool:
    """Write whole and rename into place, unless the bytes are already there (the ETag then stays).
    nginx's ETag is the mtime's second and the size: a page rewritten within the same second at
    the same size gets the next second, so its ETag changes. True if written."""
    try:
        old = path.stat()
        if old.st_size == len(data) and path.read_bytes() == data:
            return False
    except FileNotFoundError:
        old = None
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    if old is not None and old.st_size == len(data) and old.st_mtime_ns // 10**9 >= time.time_ns() // 10**9:
        later = (old.st_mtime_ns // 10**9 + 1) * 10**9
        os.utime(tmp, ns=(later, later))
    os.replace(tmp, path)
    return True


def _write_page(directory: Path, form: str, body: bytes) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    if _replace(directory / FORMS[form], body) and form == "html":
        place(directory / FORMS[form], directory / V1HTML)


def sync(store: Catalog) -> Path:
    """Render the whole tree afresh and switch to it in one rename; the old one is removed. Call
    with the store's lock held, or before anything else writes the store."""
    new = store.state_path(f"front-{time.time_ns()}")
    export(store, new)
    (new / "nginx.conf").unlink()  # export's sample configuration; the front writes its own
    for page in new.glob("simple/**/index.html"):
        place(page, page.with_name(V1HTML))
    tmp = store.state_path(".front.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(new.name, tmp)
    os.replace(tmp, tree(store))
    for old in store.state_paths("front-*"):
        if old != new:
            shutil.rmtree(old, ignore_errors=True)
    _mark(store)
    return new


def follow(store: Catalog, filename: str) -> None:
    """The store's hook, called with its lock held after `filename` was added, changed or removed."""
    link = tree(store)
    if not link.is_symlink():
        return  # no front serves this store
    try:
        _render_change(store, link.resolve(), filename)
        _mark(store)
    except Exception as e:  # the change is committed: nothing after it may fail the request that made it
        log.warning("nginx front: could not render the change to %s (%s); the next repair re-renders", filename, e)


def _project_of(filename: str) -> NormalizedName | None:
    try:
        return parse_filename(filename)[0]
    except UploadRejected:
        return None  # an artifact: served, not listed


def _render_change(store: Catalog, root: Path, filename: str) -> None:
    info = store.files().get(filename)
    packages = root / "packages"
    project = info.project if info is not None else _project_of(filename)
    if info is not None:  # the file first, then the pages that link it
        place(store.path(filename), packages / filename)
        meta = store.metadata_path(filename)
        if meta.exists():
            place(meta, packages / f"{filename}.metadata")
    projects = store.projects()
    if project:
        files = projects.get(project)
        where = root / "simple" / project
        if files:
            _write_page(where, "html", pages.project_html(project, files))
            _write_page(where, "json", pages.project_json(project, files))
        else:
            shutil.rmtree(where, ignore_errors=True)  # nginx hands the request to the app: 404
    _write_page(root / "simple", "html", pages.root_html(projects))
    _write_page(root / "simple", "json", pages.root_json(projects))
    if info is None:  # the pages no longer link it
        for p in (packages / filename, packages / f"{filename}.metadata"):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def repair(store: Catalog) -> bool:
    """Re-render everything if the store changed in a way the hook did not render. True if it did."""
    rendered = store.state_path("front.rendered")
    if rendered.exists() and rendered.read_text() == _fingerprint(store):
        return False
    with store.lock():
        if rendered.exists() and rendered.read_text() == _fingerprint(store):
            return False
        # a new Catalog looks at the directory now: `store` may trust its last look for a second
        sync(Catalog(store.root))
    return True


def stop(store: Catalog) -> None:
    """No front serves the store any more: the hook stops, the tree goes."""
    with contextlib.suppress(FileNotFoundError):
        tree(store).unlink()
    for p in (store.state_path("front.rendered"), *store.state_paths("front-*")):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
