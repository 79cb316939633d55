"""The index's store: a Catalog (catalog.py: the layout, read) that can be changed, whole or not
at all, by several processes at once.

Nothing half-done is ever visible: a file is streamed to .jetwheel/tmp/, checked, its derived data
written, and only then renamed into the directory. The rename is the commit, and the last step that
can fail: everything that needs disk space is written before it, so a full disk refuses the upload
(DiskFull) and leaves nothing behind, and the client's retry succeeds once there is space. Every change
takes the store's lock, bumps the generation and tells the observers (Store.on_change).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, cast

from jetwheel.digest import chunks
from jetwheel.errors import AlreadyExists, NotFound, TooLarge, UploadRejected
from jetwheel.index.store.catalog import DERIVED, Catalog, describe
from jetwheel.index.store.durable import fsync_path, refusing_full, remove_abandoned, staging, write_staged
from jetwheel.index.store.owners import Owner, commit_owners, stage_owners
from jetwheel.index.store.records import Hashes, Record, StoredFile, Upload, VerifyJson
from jetwheel.index.store.validate import check_artifact_name, check_filename, inspect_wheel, json_object

# Who may add a file, decided under the store's lock (so two first uploads of one name cannot both
# win): given the store, it raises a StoreError to refuse, or returns the owner record a new name gets
Claim = Callable[[Catalog], tuple[str, Owner] | None]
CLEAN_GRACE = 60.0  # seconds: a staged file this young may be one a writer has not locked (or renamed) yet


class Store(Catalog):
    """A directory of distributions and their derived data. Safe for several processes at once."""

    def __init__(self, root: Path, allow_overwrite: bool = False, max_upload: int = 8 << 30) -> None:
        super().__init__(root)
        self.allow_overwrite = allow_overwrite
        self.max_upload = max_upload
        self._observers: list[Callable[[Catalog, str], None]] = []

    # -- changing ----------------------------------------------------------------------------------
    def _next_generation(self) -> Path:
        """A new generation file, staged: renaming it over the old one (no space needed) is the bump."""
        return write_staged(self.tmp, str(time.time_ns()).encode())

    def _changed(self, staged_generation: Path) -> None:
        """Publish a change that has already been made: every reader's next look sees it."""
        os.replace(staged_generation, self.state / "generation")

    def on_change(self, observer: Callable[[Catalog, str], None]) -> None:
        """Call `observer(store, filename)` after each change committed through this store object,
        with the lock held (the nginx front's tree follows the store this way: static.follow).
        The change is already committed when it runs: an observer must not raise."""
        self._observers.append(observer)

    def _follow(self, filename: str) -> None:
        for observer in self._observers:
            observer(self, filename)

    @contextlib.contextmanager
    def staging(self) -> Iterator[tuple[IO[bytes], Path]]:
        """A temp file in the store's filesystem to stream an upload into (durable.staging)."""
        with staging(self.tmp) as staged:
            yield staged

    def add(
        self,
        upload: Upload,
        *,
        published_by: str = "",
        overwrite: bool | None = None,
        claim: Claim | None = None,
        stop: Callable[[], bool] = lambda: False,
    ) -> StoredFile:
        """Commit a staged upload (and its staged facts file) after its integrity checks: its JSON,
        name, size, the digests its publisher sent and (a distribution) the wheel itself. Raises a
        StoreError, leaving the store as it was, on any fault: DiskFull when the disk is full.
        `overwrite` (default: the store's allow_overwrite) lets the upload replace a file of the
        same name. `claim` decides, under the lock, whether this uploader may add to the name (and
        records a new name's owner); the checks end early once `stop()` is true (the uploader hung
        up). Publishing goes through publish.publish, which applies the index's policy first."""
        provenance = json_object(upload.provenance, "jetwheel_provenance")
        verify = cast(VerifyJson, json_object(upload.verify, "jetwheel_verify"))  # as sent: its word only
        meta, metadata = self._describe(upload, stop)
        for path in (upload.staged, upload.facts):  # synced once checked: a refused upload costs the disk nothing
            if path is not None:
                fsync_path(path)
        meta.update(
            {"upload_time": time.time(), "provenance": provenance, "verify": verify, "published_by": published_by}
        )
        may_replace = self.allow_overwrite if overwrite is None else overwrite
        self._commit(upload, meta, metadata, may_replace, claim)
        info = self._info(upload.filename)
        assert info is not None
        return info

    def _describe(self, upload: Upload, stop: Callable[[], bool]) -> tuple[Record, bytes | None]:
        """The upload checked against its name, size and the digests its uploader sent: its record
        (without upload time or claims) and its METADATA (None for an artifact)."""
        filename, hashes = upload.filename, upload.hashes
        check_filename(filename)
        if hashes.size > self.max_upload:
            raise TooLarge(f"file too large: {hashes.size} bytes > limit {self.max_upload}")
        sha = hashes.sha256.hexdigest()
        if upload.sha256_digest and upload.sha256_digest.lower() != sha:
            raise UploadRejected("sha256_digest does not match the uploaded bytes")
        if upload.md5_digest and upload.md5_digest.lower() != hashes.md5.hexdigest():
            raise UploadRejected("md5_digest does not match the uploaded bytes")
        if upload.artifact:
            check_artifact_name(filename, sdist_like=True)  # who may use such a name is the policy's rule
            meta: Record = {"project": "", "version": ""}
            metadata = None
        else:
            dist = inspect_wheel(upload.staged, filename, stop)
            meta, metadata = describe(dist), dist.metadata
        meta.update({"size": hashes.size, "sha256": sha})
        return meta, metadata

    def _commit(
        self, upload: Upload, meta: Record, metadata: bytes | None, may_replace: bool, claim: Claim | None = None
    ) -> None:
        """Under the lock: everything that needs space staged first, then only renames, the file's last."""
        staged, filename, facts = upload.staged, upload.filename, upload.facts
        target = self.root / filename
        with self.lock():
            if os.path.lexists(target) and not may_replace:
                raise AlreadyExists(f"{filename} already exists; the index does not overwrite files")
            new_owner = claim(self) if claim is not None else None
            staged_derived: list[Path] = []
            with refusing_full():
                try:
                    owners_tmp = self._stage_owner(new_owner)
                    if owners_tmp is not None:
                        staged_derived.append(owners_tmp)
                    meta_tmp = write_staged(self.tmp, json.dumps(meta).encode())
                    staged_derived.append(meta_tmp)
                    metadata_tmp = write_staged(self.tmp, metadata) if metadata is not None else None
                    if metadata_tmp is not None:
                        staged_derived.append(metadata_tmp)
                    generation = self._next_generation()
                    staged_derived.append(generation)
                    os.chmod(staged, 0o644)
                except OSError:
                    for p in staged_derived:
                        p.unlink(missing_ok=True)
                    raise
            if owners_tmp is not None:  # a name without its file is still its creator's: this goes first
                commit_owners(owners_tmp, self.state)
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
                fsync_path(self.root)

    def _stage_owner(self, new: tuple[str, Owner] | None) -> Path | None:
        if new is None:
            return None
        owners = self.owners()
        owners[new[0]] = new[1]
        return stage_owners(self.tmp, owners)

    def add_file(self, source: Path, filename: str | None = None, published_by: str = "") -> StoredFile:
        """Add a file from disk (tests and benchmarks fill a store this way): copied through staging like an upload."""
        filename = filename or source.name
        h = Hashes()
        with self.staging() as (out, tmp), open(source, "rb") as src:
            for chunk in chunks(src):
                h.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
            return self.add(Upload(tmp, filename, h), published_by=published_by)

    def _rewrite_meta(self, filename: str, yanked: str | None) -> StoredFile:
        if not self.regular_file(self.root / check_filename(filename)):
            raise NotFound(f"no such file: {filename}")
        with self.lock():
            # a delete may have won the race for the lock: the file is gone, say so (NotFound)
            try:
                if self._info(filename) is None:
                    raise FileNotFoundError(filename)
                meta: Record = json.loads(self._meta_path(filename).read_bytes())
            except (FileNotFoundError, ValueError):
                raise NotFound(f"no such file: {filename}") from None
            meta["yanked"] = yanked
            with refusing_full():
                staged, generation = write_staged(self.tmp, json.dumps(meta).encode()), self._next_generation()
            os.replace(staged, self._meta_path(filename))
            self._changed(generation)
            self._follow(filename)
            new = self._info(filename)
        if new is None:
            raise NotFound(f"no such file: {filename}")
        return new

    def yank(self, filename: str, reason: str = "") -> StoredFile:
        """PEP 592: pip skips a yanked file unless it is pinned exactly."""
        return self._rewrite_meta(filename, reason)

    def unyank(self, filename: str) -> StoredFile:
        return self._rewrite_meta(filename, None)

    def delete(self, filename: str) -> None:
        target = self.root / check_filename(filename)
        with self.lock():
            if not self.regular_file(target):
                raise NotFound(f"no such file: {filename}")
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
        for kind, suffix in DERIVED.items():
            for p in (self.state / kind).iterdir():
                if not p.name.endswith(suffix) or not self.regular_file(self.root / p.name[: -len(suffix)]):
                    with contextlib.suppress(FileNotFoundError):
                        p.unlink()
                        n += 1
        return n
