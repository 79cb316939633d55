"""The index's storage: a flat directory of distribution files that pypiserver can serve as it is,
plus derived data under .jetwheel/ (pypiserver ignores dot-directories).

Nothing half-done is ever visible: a file is streamed to .jetwheel/tmp/, checked, its derived data
written, and only then renamed into the directory. The rename is the commit, and the last step that
can fail: everything that needs disk space is written before it, so a full disk refuses the upload
(507) and leaves nothing behind, and the client's retry succeeds once there is space.

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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from packaging.utils import NormalizedName

from ..digest import chunks
from ..errors import StoreError, UploadRejected
from .durable import FULL, disk_full, fsync_dir, nofollow, remove_abandoned, staging, write_staged
from .records import Hashes, StoredFile
from .validate import ARTIFACT_SUFFIXES, check_artifact_name, check_filename, inspect_wheel

STATE = ".jetwheel"
CLEAN_GRACE = 60.0  # seconds: a staged file this young may be one a writer has not locked (or renamed) yet


class Store:
    """A directory of distributions and their derived data. Safe for several processes at once."""

    def __init__(self, root: Path, allow_overwrite: bool = False, max_upload: int = 8 << 30) -> None:
        self.root = Path(root).resolve()
        self.allow_overwrite = allow_overwrite
        self.max_upload = max_upload
        self.state = self.root / STATE
        self.tmp = self.state / "tmp"
        for d in (self.root, self.state, self.state / "meta", self.state / "metadata", self.state / "facts", self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        self._snapshot: tuple[tuple[int, ...], dict[str, StoredFile]] | None = None
        self._root_s, self._gen_s = str(self.root), str(self.state / "generation")
        self._dir_mtime, self._dir_checked = 0, -1.0
        self._observers: list[Callable[[Store, str], None]] = []

    # -- reading -----------------------------------------------------------------------------------
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

    def _info(self, filename: str) -> StoredFile | None:
        meta_path = self._meta_path(filename)
        try:
            meta = json.loads(meta_path.read_bytes())
        except (FileNotFoundError, ValueError):
            meta = self._derive(filename)  # a file copied in by hand or uploaded through pypiserver
            if meta is None:
                return None
        return StoredFile.from_record(filename, meta)

    def _derive(self, filename: str) -> dict[str, Any] | None:
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
        meta: dict[str, Any] = {"size": h.size, "sha256": h.sha256.hexdigest(), "upload_time": mtime}
        derived = []
        try:
            dist = inspect_wheel(path, filename)
        except UploadRejected:
            if filename.endswith(".whl") or not filename.endswith(ARTIFACT_SUFFIXES):
                return None  # a wheel that fails its checks is not served, not even as an artifact
            meta.update(project="", version="")  # an artifact (e.g. the NVPL tarball): served, not listed
        else:
            meta.update(project=dist.project, version=str(dist.version), requires_python=dist.requires_python)
            if dist.metadata is not None:
                meta["metadata_sha256"] = hashlib.sha256(dist.metadata).hexdigest()
                derived.append((self.metadata_path(filename), dist.metadata))
        derived.append((self._meta_path(filename), json.dumps(meta).encode()))
        with contextlib.suppress(OSError):  # kept for next time when there is room; used either way
            for target, data in derived:
                os.replace(write_staged(self.tmp, data), target)
        return meta

    def find_cache_key(self, key: str, trusted: tuple[str, ...]) -> StoredFile | None:
        """The file whose provenance claims the build cache key, among those uploaded by a role in
        `trusted` (anyone could claim a key: it stands for hours of build only from a builder)."""
        for f in self.files().values():
            if f.published_by in trusted and f.provenance.get("cache_key") == key:
                return f
        return None

    # -- writing -----------------------------------------------------------------------------------
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

    def _next_generation(self) -> Path:
        """A new generation file, staged: renaming it over the old one (no space needed) is the bump."""
        return write_staged(self.tmp, str(time.time_ns()).encode())

    def _changed(self, staged_generation: Path) -> None:
        """Publish a change that has already been made: every reader's next look sees it."""
        os.replace(staged_generation, self.state / "generation")

    def on_change(self, observer: Callable[[Store, str], None]) -> None:
        """Call `observer(store, filename)` after each change committed through this store object,
        with the lock held (the nginx front's tree follows the store this way: static.follow).
        The change is already committed when it runs: an observer must not raise."""
        self._observers.append(observer)

    def _follow(self, filename: str) -> None:
        for observer in self._observers:
            observer(self, filename)

    @contextlib.contextmanager
    def staging(self) -> Iterator[tuple[Any, Path]]:
        """A temp file in the store's filesystem to stream an upload into (durable.staging)."""
        with staging(self.tmp) as staged:
            yield staged

    def add(
        self,
        staged: Path,
        filename: str,
        hashes: Hashes,
        *,
        sha256_digest: str = "",
        md5_digest: str = "",
        artifact: bool = False,
        provenance: dict[str, Any] | None = None,
        verify: dict[str, Any] | None = None,
        facts: Path | None = None,
        overwrite: bool | None = None,
        published_by: str = "",
    ) -> StoredFile:
        """Commit a staged upload (and its staged facts file). Raises UploadRejected, leaving the store
        as it was, on any fault: 507 when the disk is full. `overwrite` (default: the store's
        allow_overwrite) lets the upload replace a file of the same name."""
        meta, metadata = self._describe(staged, filename, hashes, sha256_digest, md5_digest, artifact)
        meta.update(
            upload_time=time.time(), provenance=provenance or {}, verify=verify or {}, published_by=published_by
        )
        self._commit(staged, filename, meta, metadata, facts, self.allow_overwrite if overwrite is None else overwrite)
        info = self._info(filename)
        assert info is not None
        return info

    def _describe(
        self, staged: Path, filename: str, hashes: Hashes, sha256_digest: str, md5_digest: str, artifact: bool
    ) -> tuple[dict[str, Any], bytes | None]:
        """The upload checked against its name, size and the digests its uploader sent: its record
        (without upload time or claims) and its METADATA (None for an artifact)."""
        check_filename(filename)
        if hashes.size > self.max_upload:
            raise UploadRejected(f"file too large: {hashes.size} bytes > limit {self.max_upload}", 413)
        sha = hashes.sha256.hexdigest()
        if sha256_digest and sha256_digest.lower() != sha:
            raise UploadRejected("sha256_digest does not match the uploaded bytes", 400)
        if md5_digest and md5_digest.lower() != hashes.md5.hexdigest():
            raise UploadRejected("md5_digest does not match the uploaded bytes", 400)
        if artifact:
            check_artifact_name(filename)
            meta: dict[str, Any] = {"project": "", "version": ""}
            metadata = None
        else:
            dist = inspect_wheel(staged, filename)
            metadata = dist.metadata
            meta = {"project": dist.project, "version": str(dist.version), "requires_python": dist.requires_python}
        meta.update(size=hashes.size, sha256=sha)
        if metadata is not None:
            meta["metadata_sha256"] = hashlib.sha256(metadata).hexdigest()
        return meta, metadata

    def _commit(
        self,
        staged: Path,
        filename: str,
        meta: dict[str, Any],
        metadata: bytes | None,
        facts: Path | None,
        may_replace: bool,
    ) -> None:
        """Under the lock: everything that needs space staged first, then only renames, the file's last."""
        target = self.root / filename
        with self.lock():
            if os.path.lexists(target) and not may_replace:
                raise UploadRejected(f"{filename} already exists; the index does not overwrite files", 409)
            staged_derived: list[Path] = []
            try:
                meta_tmp = write_staged(self.tmp, json.dumps(meta).encode())
                staged_derived.append(meta_tmp)
                metadata_tmp = write_staged(self.tmp, metadata) if metadata is not None else None
                if metadata_tmp is not None:
                    staged_derived.append(metadata_tmp)
                generation = self._next_generation()
                staged_derived.append(generation)
                os.chmod(staged, 0o644)
            except OSError as e:
                for p in staged_derived:
                    p.unlink(missing_ok=True)
                if e.errno in FULL:
                    raise disk_full(e) from None
                raise
            os.replace(meta_tmp, self._meta_path(filename))
            if metadata_tmp is not None:
                os.replace(metadata_tmp, self.metadata_path(filename))
            else:
                self.metadata_path(filename).unlink(missing_ok=True)
            os.replace(staged, target)  # the commit: the file becomes visible only now, whole
            if facts is not None:
                os.replace(facts, self.facts_path(filename))
            else:
                self.facts_path(filename).unlink(missing_ok=True)
            self._changed(generation)
            self._follow(filename)
            with contextlib.suppress(OSError):  # durability only: the commit has happened
                fsync_dir(self.root)

    def add_file(self, source: Path, filename: str | None = None, **kw: Any) -> StoredFile:
        """Add a file from disk (tests and benchmarks fill a store this way): copied through staging like an upload."""
        filename = filename or source.name
        h = Hashes()
        with self.staging() as (out, tmp), open(source, "rb") as src:
            for chunk in chunks(src):
                h.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
            return self.add(tmp, filename, h, **kw)

    def _rewrite_meta(self, filename: str, **changes: Any) -> StoredFile:
        if not self.regular_file(self.root / check_filename(filename)):
            raise StoreError(f"no such file: {filename}")
        with self.lock():
            # a delete may have won the race for the lock: the file is gone, say so (404)
            try:
                if self._info(filename) is None:
                    raise FileNotFoundError(filename)
                meta = json.loads(self._meta_path(filename).read_bytes())
            except (FileNotFoundError, ValueError):
                raise StoreError(f"no such file: {filename}") from None
            meta.update(changes)
            try:
                staged, generation = write_staged(self.tmp, json.dumps(meta).encode()), self._next_generation()
            except OSError as e:
                if e.errno in FULL:
                    raise disk_full(e) from None
                raise
            os.replace(staged, self._meta_path(filename))
            self._changed(generation)
            self._follow(filename)
            new = self._info(filename)
        if new is None:
            raise StoreError(f"no such file: {filename}")
        return new

    def yank(self, filename: str, reason: str = "") -> StoredFile:
        """PEP 592: pip skips a yanked file unless it is pinned exactly."""
        return self._rewrite_meta(filename, yanked=reason)

    def unyank(self, filename: str) -> StoredFile:
        return self._rewrite_meta(filename, yanked=None)

    def delete(self, filename: str) -> None:
        target = self.root / check_filename(filename)
        with self.lock():
            if not self.regular_file(target):
                raise StoreError(f"no such file: {filename}")
            target.unlink()
            for p in self._derived(filename):
                p.unlink(missing_ok=True)
            try:
                self._changed(self._next_generation())
            except OSError:  # a full disk must not keep the deletion from being seen
                (self.state / "generation").unlink(missing_ok=True)
            self._follow(filename)

    def clean(self, grace: float = CLEAN_GRACE) -> int:
        """Remove what a killed process left: staged files no live writer holds and derived files
        of distributions that are gone. Under the store's lock, so another server's commit is never
        cut in half; an upload still streaming in (its staging file locked) is left alone, and so is
        any staged file younger than `grace` seconds. Returns how many files it removed."""
        with self.lock():
            return self._clean(time.time() - grace)

    def _clean(self, before: float) -> int:
        n = remove_abandoned(self.tmp, before)
        for kind, suffix in (("meta", ".json"), ("metadata", ".metadata"), ("facts", ".gz")):
            for p in (self.state / kind).iterdir():
                if not p.name.endswith(suffix) or not self.regular_file(self.root / p.name[: -len(suffix)]):
                    with contextlib.suppress(FileNotFoundError):
                        p.unlink()
                        n += 1
        return n


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
