"""The index store's reading side: where everything lies on disk, what the directory holds now (each
file with its record, cached per generation), and the generation that changes with every change.
Changing it is store.py's job (Store extends Catalog).

The layout: a flat directory of distribution files that pypiserver can serve as it is, plus derived
data under .jetwheel/ (pypiserver ignores dot-directories): meta/<file>.json (the record),
metadata/<file>.metadata (PEP 658), facts/<file>.gz (a build's facts), tmp/ (staging), generation.
Symbolic links in the directory are never followed, listed or served.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from packaging.utils import NormalizedName

from jetwheel.digest import chunks
from jetwheel.errors import UploadRejected
from jetwheel.index.store.durable import nofollow, write_staged
from jetwheel.index.store.owners import Owner, read_owners
from jetwheel.index.store.records import Hashes, Record, StoredFile
from jetwheel.index.store.validate import ARTIFACT_SUFFIXES, Distribution, check_filename, inspect_wheel

STATE = ".jetwheel"
DERIVED = {"meta": ".json", "metadata": ".metadata", "facts": ".gz"}  # under STATE: kind -> a file's suffix


class Catalog:
    """A store's directory, read. Safe for several processes at once: it never writes but derived
    data it can rebuild, and that by rename."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.state = self.root / STATE
        self.tmp = self.state / "tmp"
        for d in (self.root, self.state, *(self.state / kind for kind in DERIVED), self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        self._snapshot: tuple[tuple[int, ...], dict[str, StoredFile]] | None = None
        self._root_s, self._gen_s = str(self.root), str(self.state / "generation")
        self._dir_mtime, self._dir_checked = 0, -1.0

    def generation(self, fresh: bool = False) -> tuple[int, ...]:
        """Changes whenever what the index shows could change. Every change made through the store
        rewrites the generation file (a new inode each time, so even two changes within one mtime
        tick differ): one stat per call, on the page-serving hot path. The directory itself, which
        changes on its own only when files are copied in by hand, is looked at once a second, or
        now when `fresh`."""
        now = time.monotonic()
        if fresh or now >= self._dir_checked + 1.0:
            self._dir_mtime, self._dir_checked = os.stat(self._root_s).st_mtime_ns, now
        try:
            st = os.stat(self._gen_s)
        except FileNotFoundError:
            return (self._dir_mtime, 0, 0)
        return (self._dir_mtime, st.st_mtime_ns, st.st_ino)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """The store's lock (flock, so across processes): held, no change is made through any store
        of this directory. Every change takes it; so may a reader that needs the store to stand still."""
        with open(self.state / "lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def files(self) -> dict[str, StoredFile]:
        """Every visible distribution and artifact, by filename. Cached per generation."""
        gen = self.generation()
        if self._snapshot and self._snapshot[0] == gen:
            return self._snapshot[1]
        out: dict[str, StoredFile] = {}
        for entry in os.scandir(self.root):
            if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False) or not _utf8(entry.name):
                continue
            info = self._info(entry.name)
            if info is not None:
                out[entry.name] = info
        self._snapshot = (gen, out)
        return out

    def projects(self) -> dict[NormalizedName, list[StoredFile]]:
        by: dict[NormalizedName, list[StoredFile]] = {}
        for f in self.files().values():
            if f.project:
                by.setdefault(f.project, []).append(f)
        for v in by.values():
            v.sort(key=lambda f: f.filename)
        return dict(sorted(by.items()))

    def owners(self) -> dict[str, Owner]:
        """Who owns each name (owners.py): read fresh each time; it changes only under the store's lock."""
        return read_owners(self.state)

    def find_cache_key(self, key: str, trusted: tuple[str, ...]) -> StoredFile | None:
        """The file whose provenance claims the build cache key, among those uploaded by a role in
        `trusted` (anyone could claim a key: it stands for hours of build only from a builder)."""
        for f in self.files().values():
            if f.published_by in trusted and f.provenance.get("cache_key") == key:
                return f
        return None

    # -- where things lie --------------------------------------------------------------------------
    def path(self, filename: str) -> Path:
        check_filename(filename)
        return self.root / filename

    def metadata_path(self, filename: str) -> Path:
        return self.state / "metadata" / f"{check_filename(filename)}.metadata"

    def facts_path(self, filename: str) -> Path:
        """Where a build's facts about the file (gzip'd JSON, as its uploader sent them) are kept."""
        return self.state / "facts" / f"{check_filename(filename)}.gz"

    def _meta_path(self, filename: str) -> Path:
        return self.state / "meta" / f"{filename}.json"

    def _derived(self, filename: str) -> tuple[Path, Path, Path]:
        return self._meta_path(filename), self.metadata_path(filename), self.facts_path(filename)

    def state_path(self, name: str) -> Path:
        """`name` in the state directory: where another part of the index (the nginx front's tree,
        the profiles' results) keeps files of its own. pypiserver ignores them; the store never reads them."""
        return self.state / _plain(name)

    def state_paths(self, pattern: str) -> list[Path]:
        """The state directory's entries whose names match the glob `pattern` (see state_path)."""
        return sorted(self.state.glob(pattern))

    def scratch_path(self, name: str) -> Path:
        """`name` in the staging directory: on the store's file system, so it can be renamed into the
        state directory; clean() removes it once it is old and nobody holds it locked."""
        return self.tmp / _plain(name)

    def regular_file(self, path: Path) -> bool:
        """True for a regular file that is not a symbolic link (links are never served)."""
        try:
            return stat.S_ISREG(os.lstat(path).st_mode)
        except OSError:
            return False

    # -- records -----------------------------------------------------------------------------------
    def _info(self, filename: str) -> StoredFile | None:
        meta_path = self._meta_path(filename)
        try:
            meta = json.loads(meta_path.read_bytes())
        except (FileNotFoundError, ValueError):
            meta = self._derive(filename)  # a file copied in by hand or uploaded through pypiserver
            if meta is None:
                return None
        return StoredFile.from_record(filename, meta)

    def _derive(self, filename: str) -> Record | None:
        """Rebuild derived data from the file itself."""
        path = self.root / filename
        h = Hashes()
        try:
            with open(path, "rb", opener=nofollow) as f:
                for chunk in chunks(f):
                    h.update(chunk)
                mtime = os.fstat(f.fileno()).st_mtime
        except OSError:  # gone, or a symbolic link (O_NOFOLLOW)
            return None
        meta: Record = {"size": h.size, "sha256": h.sha256.hexdigest(), "upload_time": mtime}
        derived = []
        try:
            dist = inspect_wheel(path, filename)
        except UploadRejected:
            if filename.endswith(".whl") or not filename.endswith(ARTIFACT_SUFFIXES):
                return None  # a wheel that fails its checks is not served, not even as an artifact
            meta.update({"project": "", "version": ""})  # an artifact (e.g. the NVPL tarball): served, not listed
        else:
            meta.update(describe(dist))
            if dist.metadata is not None:
                derived.append((self.metadata_path(filename), dist.metadata))
        derived.append((self._meta_path(filename), json.dumps(meta).encode()))
        with contextlib.suppress(OSError):  # kept for next time when there is room; used either way
            for target, data in derived:
                os.replace(write_staged(self.tmp, data), target)
        return meta


def describe(dist: Distribution) -> Record:
    """What a distribution's record says of it, from its name and METADATA."""
    record: Record = {
        "project": dist.project,
        "version": str(dist.version),
        "requires_python": dist.requires_python,
    }
    if dist.metadata is not None:
        record["metadata_sha256"] = hashlib.sha256(dist.metadata).hexdigest()
    return record


def _plain(name: str) -> str:
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"not a plain file name: {name!r}")
    return name


def _utf8(name: str) -> bool:
    """False for a name the file system holds as bytes that are not UTF-8 (Python decodes them with
    surrogates): such a file cannot be named in a URL or a page, so the index ignores it."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
