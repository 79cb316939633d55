"""The source tasks: `sources.fetch` and `sources.upload`."""

from __future__ import annotations

from pathlib import Path

from invoke.collection import Collection
from invoke.context import Context
from invoke.tasks import task

from jetwheel.cli.edge import clean_errors


@task(
    help={
        "name": "recipe whose pinned source to fetch",
        "profile": "profile giving the version (default: the profile pinning NAME, triton-25.04 first)",
        "from_": "a local git checkout, directory or source archive to pack instead of cloning upstream",
        "out": "directory to write <name>-<version>-src.tar.gz to",
        "sources": "where the sub-sources' archives are taken from first (default $JETWHEEL_SOURCES)",
        "index": "index URL: sub-source archives not in the sources directory are taken from it",
    }
)
@clean_errors
def fetch(
    c: Context, name: str, profile: str = "", from_: str = "", out: str = ".", sources: str = "", index: str = ""
) -> None:
    """Make the reproducible source archive of NAME's pinned source (submodules included), and copy
    its sub-sources' pinned archives beside it; print each path, sha256 and commit."""
    from jetwheel.workflow.sources import fetch_sources

    fetched = fetch_sources(name, profile, Path(out), Path(from_) if from_ else None, sources, index)
    print(fetched.archive.path)
    print(f"sha256 {fetched.archive.sha256}")
    if fetched.archive.commit:
        print(f"commit {fetched.archive.commit}")
    for sub in fetched.subs:
        print(f"{sub.path}\nsha256 {sub.sha256}\ncommit {sub.commit}")


@task(help={"path": "a source archive made by inv sources.fetch", "index": "index URL"})
@clean_errors
def upload(c: Context, path: str, index: str = "") -> None:
    """Put a source archive on the index, where builds look for it before upstream."""
    from jetwheel.workflow.sources import upload_source

    done = upload_source(Path(path), index)
    print(f"{done.url}  sha256 {done.sha256}")


sources_ns = Collection("sources", fetch, upload)
