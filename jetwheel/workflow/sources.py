"""`sources.fetch` and `sources.upload`: a recipe's pinned sources as reproducible archives."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from jetwheel.digest import sha256_file
from jetwheel.errors import PlanError
from jetwheel.model.recipe import Recipe
from jetwheel.model.stepsource import StepSource
from jetwheel.sources.archives import Archive
from jetwheel.sources.fetch import Lookup, make_archive
from jetwheel.sources.subsources import sub_archive
from jetwheel.workflow.context import Context, context
from jetwheel.workflow.profiles import profile_for


@dataclass(frozen=True)
class Fetched:
    archive: Archive
    subs: list[Archive]


def fetch_sources(name: str, profile: str, out: Path, from_path: Path | None, sources: str, index: str) -> Fetched:
    """NAME's pinned source as a reproducible archive in `out`, and its sub-sources' archives beside
    it, taken from `sources` (default $JETWHEEL_SOURCES), then `index` (when given), then upstream,
    each checked against its sha256."""
    ctx = context(profile=profile, index=index)
    recipe, spec, pin = _pinned_source(name, ctx)
    archive = make_archive(recipe.name, pin, spec, out, from_path)
    lookup = Lookup(Path(sources) if sources else ctx.settings.sources, ctx.client if index else None)
    return Fetched(archive, [sub_archive(sub, out, lookup) for sub in spec.subs])


@dataclass(frozen=True)
class Uploaded:
    url: str
    sha256: str


def upload_source(path: Path, index: str) -> Uploaded:
    """Put a source archive on the index, at a stable URL builds look in before upstream."""
    client = context(index=index).client
    client.upload(path, artifact=True)
    return Uploaded(client.package_url(path.name), sha256_file(path))


def _pinned_source(name: str, ctx: Context) -> tuple[Recipe, StepSource, str]:
    from jetwheel.build.plan import source_spec, wheel_version

    recipes = ctx.recipes
    recipe = recipes.get(canonicalize_name(name))
    if recipe is None:
        raise PlanError(f"unknown package {name!r}; recipes exist for: {', '.join(sorted(recipes))}")
    prof = profile_for(name, ctx.profile_name, root=ctx.root)
    pin = prof.pin(name)
    return recipe, source_spec(recipe, wheel_version(recipe, prof), pin), pin
