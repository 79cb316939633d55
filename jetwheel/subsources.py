"""Sub-sources: the further pinned trees a build finds through a variable (vLLM's CUTLASS,
flash-attention, FlashMLA). Each archive is kept byte for byte and taken as a main source is (see
sources.py): the local source directory, then the index, then its upstream URL where the recipe
names one; always checked against its sha256."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .errors import SourceError
from .index.client import IndexClient
from .sources import CACHE, Archive, FetchedSource, check_pin, download_pinned, from_local_or_index, looked, unpack
from .stepsource import SubSource


def _no_upstream(sub: SubSource, client: IndexClient | None, local_dir: Path | None) -> SourceError:
    where = looked(client, local_dir) or "any source directory"
    return SourceError(
        f"{sub.name}: {sub.archive} (sha256 {sub.sha256[:12]}...) is not in {where}, "
        "and the recipe names no upstream URL for it; put it in the source directory (--sources DIR or "
        "$JETWHEEL_SOURCES) or on the index (inv sources.upload)"
    )


def fetch_sub(
    sub: SubSource, dest: Path, client: IndexClient | None = None, local_dir: Path | None = None, cache: Path = CACHE
) -> FetchedSource:
    """Lay a sub-source's tree out at `dest`: its archive from the local source directory, then the
    index, then its upstream URL, always checked against its sha256. Patches are the plan's."""
    found = from_local_or_index(sub.name, sub.archive, sub.sha256, dest, client, local_dir, cache)
    if found is not None:
        return FetchedSource(dest, sub.sha256, found.origin, sub.commit)
    if not sub.url:
        raise _no_upstream(sub, client, local_dir)
    with tempfile.TemporaryDirectory(prefix=f"jetwheel-{sub.name}-") as tmp:
        archive = download_pinned(sub.name, sub.url, sub.sha256, Path(tmp) / sub.archive, cache)
        unpack(archive.path, dest)
    return FetchedSource(dest, sub.sha256, sub.url, sub.commit)


def pinned_sub(sub: SubSource, client: IndexClient | None = None, local_dir: Path | None = None) -> str:
    """Where a build would take a sub-source's archive from, checked against its pin without
    unpacking it (a local file is hashed; the index's published sha256 is compared); raises
    SourceError naming both hashes, or where to put an archive that is nowhere."""
    local = local_dir / sub.archive if local_dir is not None else None
    if local is not None and local.is_file():
        check_pin(local, sub.sha256, sub.name)
        return str(local)
    info = client.file_info(sub.archive) if client is not None else None
    if client is not None and info is not None:
        if info.get("sha256") != sub.sha256:
            theirs = info.get("sha256")
            raise SourceError(
                f"{sub.name}: {sub.archive} on {client.url} has sha256 {theirs}, the recipe pins {sub.sha256}"
            )
        return f"{client.url}/packages/{sub.archive}"
    if not sub.url:
        raise _no_upstream(sub, client, local_dir)
    return sub.url


def sub_archive(
    sub: SubSource, out_dir: Path, client: IndexClient | None = None, local_dir: Path | None = None, cache: Path = CACHE
) -> Archive:
    """`inv sources.fetch`: a sub-source's archive copied into out_dir from where a build would take
    it (source directory, index, upstream URL), checked against its sha256."""
    out = out_dir / sub.archive
    out_dir.mkdir(parents=True, exist_ok=True)
    local = local_dir / sub.archive if local_dir is not None else None
    if local is not None and local.is_file():
        check_pin(local, sub.sha256, sub.name)
        if local.resolve() != out.resolve():
            shutil.copyfile(local, out)
    elif client is not None and client.file_info(sub.archive) is not None:
        with tempfile.TemporaryDirectory(prefix=".index-", dir=out_dir) as tmp:
            path = client.download(sub.archive, Path(tmp))
            check_pin(path, sub.sha256, sub.name)
            os.replace(path, out)
    elif sub.url:
        download_pinned(sub.name, sub.url, sub.sha256, out, cache)
    else:
        raise _no_upstream(sub, client, local_dir)
    return Archive(out, sub.sha256, sub.commit)
