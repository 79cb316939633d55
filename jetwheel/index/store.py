"""The index's storage: a flat directory of distribution files that pypiserver can serve as it is,
plus derived data under .jetwheel/ (pypiserver ignores dot-directories).

Nothing half-done is ever visible: a file is streamed to .jetwheel/tmp/, checked, its derived data
written, and only then renamed into the directory. The rename is the commit.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.utils import NormalizedName

from ..errors import StoreError, UploadRejected
from .validate import ARTIFACT_SUFFIXES, check_filename, inspect_wheel, parse_filename

STATE = ".jetwheel"


@dataclass(frozen=True)
class StoredFile:
    filename: str
    project: NormalizedName
    version: str
    size: int
    sha256: str
    upload_time: float
    requires_python: str
    metadata_sha256: str  # "" when there is no PEP 658 metadata (sdists)
    yanked: str | None  # None, or the reason ("" is allowed: yanked without reason)
    provenance: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    verify: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass
class Hashes:
    """Digests computed while a body streams in, so the bytes are read once."""

    sha256: Any = field(default_factory=hashlib.sha256)
    md5: Any = field(default_factory=hashlib.md5)
    blake2_256: Any = field(default_factory=lambda: hashlib.blake2b(digest_size=32))
    size: int = 0

    def update(self, chunk: bytes) -> None:
        self.sha256.update(chunk)
        self.md5.update(chunk)
        self.blake2_256.update(chunk)
        self.size += len(chunk)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Store:
    """A directory of distributions and their derived data. Safe for several processes at once."""

    def __init__(self, root: Path, allow_overwrite: bool = False, max_upload: int = 8 << 30) -> None:
        self.root = Path(root).resolve()
        self.allow_overwrite = allow_overwrite
        self.max_upload = max_upload
        self.state = self.root / STATE
        for d in (self.root, self.state, self.state / "meta", self.state / "metadata", self.state / "tmp"):
            d.mkdir(parents=True, exist_ok=True)
        self._snapshot: tuple[tuple[int, ...], dict[str, StoredFile]] | None = None
        self._root_s, self._gen_s = str(self.root), str(self.state / "generation")
        self._dir_mtime, self._dir_checked = 0, -1.0

    # -- reading -----------------------------------------------------------------------------------
    def generation(self) -> tuple[int, ...]:
        """Changes whenever what the index shows could change. Every change made through the store
        rewrites the generation file (a new inode each time, so even two changes within one mtime
        tick differ): one stat per call, on the page-serving hot path. The directory itself, which
        changes on its own only when files are copied in by hand, is looked at once a second."""
        now = time.monotonic()
        if now >= self._dir_checked + 1.0:
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
            if entry.name.startswith(".") or not entry.is_file():
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

    def _meta_path(self, filename: str) -> Path:
        return self.state / "meta" / f"{filename}.json"

    def _info(self, filename: str) -> StoredFile | None:
        meta_path = self._meta_path(filename)
        try:
            meta = json.loads(meta_path.read_bytes())
        except (FileNotFoundError, ValueError):
            meta = self._derive(filename)  # a file copied in by hand or uploaded through pypiserver
            if meta is None:
                return None
        return StoredFile(
            filename=filename,
            project=meta.get("project", ""),
            version=meta.get("version", ""),
            size=meta["size"],
            sha256=meta["sha256"],
            upload_time=meta["upload_time"],
            requires_python=meta.get("requires_python", ""),
            metadata_sha256=meta.get("metadata_sha256", ""),
            yanked=meta.get("yanked"),
            provenance=meta.get("provenance", {}),
            verify=meta.get("verify", {}),
        )

    def _derive(self, filename: str) -> dict[str, Any] | None:
        """Rebuild derived data from the file itself."""
        path = self.root / filename
        h = Hashes()
        try:
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            st = path.stat()
        except FileNotFoundError:
            return None
        meta: dict[str, Any] = {"size": h.size, "sha256": h.sha256.hexdigest(), "upload_time": st.st_mtime}
        try:
            dist = inspect_wheel(path, filename)
        except UploadRejected:
            if not filename.endswith(ARTIFACT_SUFFIXES) and not filename.endswith(".whl"):
                return None
            meta.update(project="", version="")  # an artifact (e.g. the NVPL tarball): served, not listed
        else:
            meta.update(project=dist.project, version=str(dist.version), requires_python=dist.requires_python)
            if dist.metadata is not None:
                _atomic_write(self.metadata_path(filename), dist.metadata)
                meta["metadata_sha256"] = hashlib.sha256(dist.metadata).hexdigest()
        with contextlib.suppress(OSError):
            _atomic_write(self._meta_path(filename), json.dumps(meta).encode())
        return meta

    def find_cache_key(self, key: str) -> StoredFile | None:
        for f in self.files().values():
            if f.provenance.get("cache_key") == key:
                return f
        return None

    # -- writing -----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        with open(self.state / "lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _changed(self, filename: str) -> None:
        """After each committed change, with the lock held: the nginx front's tree follows it
        (jetwheel/index/static.py; nothing happens when no front serves this store)."""
        from .static import follow  # static imports this module

        follow(self, filename)

    def _bump(self) -> None:
        _atomic_write(self.state / "generation", str(time.time_ns()).encode())

    @contextlib.contextmanager
    def staging(self) -> Iterator[tuple[Any, Path]]:
        """A temp file in the store's filesystem to stream an upload into; always removed after."""
        fd, name = tempfile.mkstemp(dir=self.state / "tmp", prefix="upload-", suffix=".part")
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as f:
                yield f, tmp
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

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
    ) -> StoredFile:
        """Commit a staged upload. Raises UploadRejected (and leaves the store as it was) on any fault."""
        check_filename(filename)
        if hashes.size > self.max_upload:
            raise UploadRejected(f"file too large: {hashes.size} bytes > limit {self.max_upload}", 413)
        sha = hashes.sha256.hexdigest()
        if sha256_digest and sha256_digest.lower() != sha:
            raise UploadRejected("sha256_digest does not match the uploaded bytes", 400)
        if md5_digest and md5_digest.lower() != hashes.md5.hexdigest():
            raise UploadRejected("md5_digest does not match the uploaded bytes", 400)
        if artifact:
            if not filename.endswith((*ARTIFACT_SUFFIXES, ".whl")):
                raise UploadRejected(f"artifact {filename!r} must be a .whl, .tar, .tar.gz, .tar.xz, .tgz or .zip", 400)
            meta: dict[str, Any] = {"project": "", "version": ""}
            metadata = None
            if filename.endswith(".whl"):
                try:
                    parse_filename(filename)
                    with zipfile.ZipFile(staged):
                        pass
                except (UploadRejected, zipfile.BadZipFile) as e:
                    raise UploadRejected(f"artifact {filename!r} is not a valid wheel: {e}", 400) from None
        else:
            dist = inspect_wheel(staged, filename)
            metadata = dist.metadata
            meta = {"project": dist.project, "version": str(dist.version), "requires_python": dist.requires_python}
        meta.update(
            size=hashes.size, sha256=sha, upload_time=time.time(), provenance=provenance or {}, verify=verify or {}
        )
        if metadata is not None:
            meta["metadata_sha256"] = hashlib.sha256(metadata).hexdigest()
        target = self.root / filename
        with self._lock():
            if target.exists() and not self.allow_overwrite:
                raise UploadRejected(f"{filename} already exists; the index does not overwrite files", 409)
            if metadata is not None:
                _atomic_write(self.metadata_path(filename), metadata)
            _atomic_write(self._meta_path(filename), json.dumps(meta).encode())
            os.chmod(staged, 0o644)
            os.replace(staged, target)  # the commit: the file becomes visible only now, whole
            _fsync_dir(self.root)
            self._bump()
            self._changed(filename)
        info = self._info(filename)
        assert info is not None
        return info

    def add_file(self, source: Path, filename: str | None = None, **kw: Any) -> StoredFile:
        """Add a file from disk (publish, mirror, tests): copied through staging like an upload."""
        filename = filename or source.name
        h = Hashes()
        with self.staging() as (out, tmp), open(source, "rb") as src:
            while chunk := src.read(1 << 20):
                h.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
            return self.add(tmp, filename, h, **kw)

    def _rewrite_meta(self, filename: str, **changes: Any) -> StoredFile:
        if not (self.root / check_filename(filename)).is_file():
            raise StoreError(f"no such file: {filename}")
        with self._lock():
            info = self._info(filename)
            assert info is not None
            meta = json.loads(self._meta_path(filename).read_bytes())
            meta.update(changes)
            _atomic_write(self._meta_path(filename), json.dumps(meta).encode())
            self._bump()
            self._changed(filename)
        new = self._info(filename)
        assert new is not None
        return new

    def yank(self, filename: str, reason: str = "") -> StoredFile:
        """PEP 592: pip skips a yanked file unless it is pinned exactly."""
        return self._rewrite_meta(filename, yanked=reason)

    def unyank(self, filename: str) -> StoredFile:
        return self._rewrite_meta(filename, yanked=None)

    def set_verify(self, filename: str, report: dict[str, Any]) -> StoredFile:
        return self._rewrite_meta(filename, verify=report)

    def delete(self, filename: str) -> None:
        target = self.root / check_filename(filename)
        with self._lock():
            try:
                target.unlink()
            except FileNotFoundError:
                raise StoreError(f"no such file: {filename}") from None
            for p in (self._meta_path(filename), self.metadata_path(filename)):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
            self._bump()
            self._changed(filename)

    def clean_tmp(self) -> int:
        """Remove staging leftovers of a killed process. Safe at start-up, before serving."""
        n = 0
        for p in (self.state / "tmp").iterdir():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                n += 1
        return n
