"""Sub-sources: the further pinned trees a build finds through a variable (vLLM's CUTLASS,
flash-attention, FlashMLA). Each archive is kept byte for byte and taken from where
source_fetch.find says (the local source directory, then the index, then its upstream URL where the
recipe names one); always checked against its sha256."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from jetwheel.errors import SourceError
from jetwheel.model.stepsource import SubSource
from jetwheel.sources.archives import Archive, check_pin, unpack
from jetwheel.sources.fetch import (
    FetchedSource,
    IndexArchive,
    LocalArchive,
    Lookup,
    Place,
    download_pinned,
    find,
    unpack_held,
)


def _find(sub: SubSource, lookup: Lookup) -> Place:
    """Where the sub-source's archive is taken from; SourceError saying where to put it when nowhere."""
    found = find(sub.archive, sub.url, lookup)
    if found is None:
        raise SourceError(
            f"{sub.name}: {sub.archive} (sha256 {sub.sha256[:12]}...) is not in "
            f"{lookup.looked() or 'any source directory'}, and the recipe names no upstream URL for it; put it "
            "in the source directory (--sources DIR or $JETWHEEL_SOURCES) or on the index (inv sources.upload)"
        )
    return found


def fetch_sub(sub: SubSource, dest: Path, lookup: Lookup) -> FetchedSource:
    """Lay a sub-source's tree out at `dest`, its archive checked against its sha256. Patches are
    the plan's."""
    found = _find(sub, lookup)
    if isinstance(found, LocalArchive | IndexArchive):
        unpack_held(found, sub.name, sub.sha256, dest, lookup)
    else:
        with tempfile.TemporaryDirectory(prefix=f"jetwheel-{sub.name}-") as tmp:
            archive = download_pinned(sub.name, found.url, sub.sha256, Path(tmp) / sub.archive, lookup.cache)
            unpack(archive.path, dest)
    return FetchedSource(dest, sub.sha256, found.origin, sub.commit)


def pinned_sub(sub: SubSource, lookup: Lookup) -> Place:
    """Where a build would take a sub-source's archive from, checked against its pin without
    unpacking it (a local file is hashed; the index's published sha256 is compared; an upstream URL
    is checked when fetched); raises SourceError naming both hashes, or where to put an archive
    that is nowhere."""
    found = _find(sub, lookup)
    if isinstance(found, LocalArchive):
        check_pin(found.path, sub.sha256, sub.name)
    elif isinstance(found, IndexArchive) and found.sha256 != sub.sha256:
        raise SourceError(f"{sub.name}: {found.origin} has sha256 {found.sha256}, the recipe pins {sub.sha256}")
    return found


def sub_archive(sub: SubSource, out_dir: Path, lookup: Lookup) -> Archive:
    """`inv sources.fetch`: a sub-source's archive copied into out_dir from where a build would take
    it, checked against its sha256."""
    out = out_dir / sub.archive
    out_dir.mkdir(parents=True, exist_ok=True)
    found = _find(sub, lookup)
    if isinstance(found, LocalArchive):
        check_pin(found.path, sub.sha256, sub.name)
        if found.path.resolve() != out.resolve():
            shutil.copyfile(found.path, out)
    elif isinstance(found, IndexArchive):
        with tempfile.TemporaryDirectory(prefix=".index-", dir=out_dir) as tmp:
            os.replace(found.download(sub.sha256, sub.name, Path(tmp)), out)
    else:
        download_pinned(sub.name, found.url, sub.sha256, out, lookup.cache)
    return Archive(out, sub.sha256, sub.commit)
