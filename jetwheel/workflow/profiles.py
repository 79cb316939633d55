"""Which profile a task means, and the profiles as the index's pages show them."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from jetwheel.errors import PlanError, RecipeError
from jetwheel.model.profile import Profile
from jetwheel.model.recipe import load_profile
from jetwheel.workflow.context import context

PREFERRED_PROFILE = "triton-25.04"


def profile_for(name: str, profile: str = "", arch: str = "", root: Path | None = None) -> Profile:
    """The named profile, or the one that pins `name` (triton-25.04 first); with `arch`, one whose
    target is that architecture (mini-aarch64 for `--arch aarch64`). `root`: the run's recipes
    (Context.root; default this process's)."""
    root = root or context().root
    if profile:
        return load_profile(profile, root)
    names = sorted(p.stem for p in (root / "profiles").glob("*.toml"))
    names.sort(key=lambda n: n != PREFERRED_PROFILE)
    for n in names:
        prof = load_profile(n, root)
        if canonicalize_name(name) in prof.versions and (not arch or prof.arch == arch):
            return prof
    raise PlanError(f"no profile pins {name!r}; pass --profile (known: {', '.join(names)})")


def profile_views(root: Path | None = None) -> dict[str, Any]:
    """Every profile as the plain data the index's pages show (the server reads no recipes); `root`:
    the run's recipes (Context.root; default this process's)."""
    from jetwheel.index.server.profiles import ProfileView

    root = root or context().root
    views = {}
    for path in sorted((root / "profiles").glob("*.toml")):
        with contextlib.suppress(RecipeError):
            p = load_profile(path.stem, root)
            views[p.name] = ProfileView(
                p.name, p.top, {str(k): v for k, v in p.versions.items()}, p.target(), p.jetpack, p.l4t
            )
    return views


def consumed_artifacts(root: Path | None = None) -> frozenset[str]:
    """The artifact file names a build or build.py takes from the index: each profile's NVPL
    tarball and each recipe's sub-source archives (source archives, `<name>-<pin>-src.tar.gz`,
    the index knows by their suffix). Only builders and admins may publish these (the index's rule)."""
    from jetwheel.model.recipe import load_recipes

    root = root or context().root
    names: set[str] = set()
    with contextlib.suppress(RecipeError):
        for recipe in load_recipes(root).values():
            names |= {sub.archive for sub in recipe.source.subs}
    for path in sorted((root / "profiles").glob("*.toml")):
        with contextlib.suppress(RecipeError):
            triton = load_profile(path.stem, root).triton
            if triton is not None and triton.nvpl_slim:
                names.add(triton.nvpl_slim)
    return frozenset(names)
