"""Recipes: how to build one package, loaded from TOML and validated, one reader per table
([package], [source] with its [[source.sub]], [build], [repair], [verify]). Versions come from a
profile (profile.py), never from here. Every error names the file, the key and the fix.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from packaging.utils import canonicalize_name

from jetwheel.errors import RecipeError
from jetwheel.model.locallabel import LocalLabel, parse_label
from jetwheel.model.profile import load_profile
from jetwheel.model.schema import DEFAULT_RECIPES, Table, read_toml, recipes_root
from jetwheel.model.stepsource import SourceKind, SubSource

# the door (cli.py) reads recipes and profiles through this module
__all__ = ["FRONTENDS", "Frontend", "Recipe", "Source", "load_profile", "load_recipe", "load_recipes", "recipes_root"]

# "build" (pypa/build, no isolation), "pip" (pip wheel, no build isolation), or "cibuildwheel"
# (a manylinux container cibuildwheel runs itself: for recipes that need no JetPack)
Frontend = Literal["build", "pip", "cibuildwheel"]
FRONTENDS: tuple[Frontend, ...] = get_args(Frontend)


@dataclass(frozen=True)
class Source:
    """Where a recipe's source comes from: a git ref, an sdist with its hash, or a local tree."""

    kind: SourceKind
    location: str  # git URL, sdist URL or absolute path; may hold {version}
    ref: str = ""  # git ref (tag or commit); may hold {version}
    sha256: str = ""  # of the sdist (url), or of the reproducible source archive (git; inv sources.fetch)
    commit: str = ""  # for kind == "git": the commit the ref must resolve to
    submodules: bool = False
    subdir: str = ""  # where the build's pyproject/setup.py is, inside the source tree
    subs: tuple[SubSource, ...] = ()  # further pinned trees the build finds through a variable


@dataclass(frozen=True)
class Recipe:
    """How to build one wheel. Versions come from the profile, never from here."""

    name: str
    path: Path
    summary: str
    source: Source
    deps: tuple[str, ...]  # other recipes, installed from our index at the profile's pin
    # other recipes the wheel requires at run time (its Requires-Dist): built before it where the
    # profile pins them, so the index resolves the stack, but never installed into its build
    run_deps: tuple[str, ...]
    requires: tuple[str, ...]  # build tools installed into the build env (pip requirement strings)
    frontend: Frontend
    env: Mapping[str, str]
    pre: tuple[str, ...]  # shell commands run in the source tree before the build
    patches: tuple[Path, ...]
    job_memory_gb: float  # peak memory of one compile job; MAX_JOBS is derived from it
    disk_gb: float  # free disk one build needs where it builds: source, env, build tree, wheel
    # the build runs no binary of its dependencies (xgrammar: C++ and CMake only; not torchvision,
    # whose setup.py imports torch): another machine's wheel can then be crossed, not emulated
    cross: bool
    exclude: tuple[str, ...]  # sonames auditwheel must not graft (JetPack or a dependency wheel has them)
    manylinux: bool  # False: keep linux_<arch>, see manylinux_reason
    manylinux_reason: str
    extensions: tuple[str, ...]  # modules the wheel must contain, e.g. vllm._C
    cuda: bool  # the wheel must carry device code for the profile's GPU
    abi3: str  # "" or the limited-API floor, e.g. "cp38" for vLLM
    local_version: LocalLabel  # the label the package's build writes: the profile's, none, or its own
    notes: str
    digest: str  # sha256 of the recipe file and its patches: part of every cache key

    @property
    def key(self) -> str:
        return canonicalize_name(self.name)

    @property
    def subdir(self) -> str:
        return self.source.subdir


@dataclass(frozen=True)
class _Package:
    name: str
    summary: str
    notes: str
    local_version: LocalLabel


@dataclass(frozen=True)
class _Build:
    deps: tuple[str, ...]
    run_deps: tuple[str, ...]
    requires: tuple[str, ...]
    frontend: Frontend
    env: dict[str, str]
    pre: tuple[str, ...]
    patches: tuple[Path, ...]
    job_memory_gb: float
    disk_gb: float
    cross: bool
    abi3: str


@dataclass(frozen=True)
class _Repair:
    exclude: tuple[str, ...]
    manylinux: bool
    reason: str


def load_recipe(path: Path) -> Recipe:
    """Load one recipe file; raise RecipeError naming file, key and fix."""
    path = path.resolve()
    top = Table(path, "", read_toml(path))
    package = _package(top)
    source = _source(top)
    build = _build(top)
    repair = _repair(top, build.frontend, source)
    extensions, cuda = _verify(top)
    top.done()
    return Recipe(
        name=package.name,
        path=path,
        summary=package.summary,
        source=source,
        deps=build.deps,
        run_deps=build.run_deps,
        requires=build.requires,
        frontend=build.frontend,
        env=build.env,
        pre=build.pre,
        patches=build.patches,
        job_memory_gb=build.job_memory_gb,
        disk_gb=build.disk_gb,
        cross=build.cross,
        exclude=repair.exclude,
        manylinux=repair.manylinux,
        manylinux_reason=repair.reason,
        extensions=extensions,
        cuda=cuda,
        abi3=build.abi3,
        local_version=package.local_version,
        notes=package.notes,
        digest=_file_digest([path, *build.patches, *(Path(p) for sub in source.subs for p in sub.patches)]),
    )


def _package(top: Table) -> _Package:
    """[package]: the name, what it is, and the local label its build writes."""
    pkg = top.table("package")
    name = pkg.get("name", str, required=True)
    summary = pkg.get("summary", str, "")
    notes = pkg.get("notes", str, "")
    label = parse_label(
        top.path, pkg.get("local_version", str, "profile"), pkg.get("local_version_unless_cuda", str, "")
    )
    pkg.done()
    return _Package(name, summary, notes, label)


def _source(top: Table) -> Source:
    """[source]: exactly one of git (with ref), url (with sha256) or path (a directory beside the
    recipe), and the sub-sources."""
    path, src = top.path, top.table("source")
    git, url, local = src.get("git", str), src.get("url", str), src.get("path", str)
    given = [k for k, v in (("git", git), ("url", url), ("path", local)) if v]
    if len(given) != 1:
        raise RecipeError(f"{path}: source needs exactly one of git, url or path (found {given or 'none'})")
    ref = src.get("ref", str, "")
    sha256 = src.get("sha256", str, "")
    commit = src.get("commit", str, "")
    submodules = src.get("submodules", bool, False)
    subdir = src.get("subdir", str, "")
    subs = _subs(src)
    src.done()
    if git:
        if not ref:
            raise RecipeError(f'{path}: source.ref is missing; pin a tag or commit, e.g. ref = "v{{version}}"')
        if sha256 and len(sha256) != 64:
            raise RecipeError(f"{path}: source.sha256 must be 64 hex digits (inv sources.fetch prints it)")
        return Source(
            "git", git, ref=ref, sha256=sha256, commit=commit, submodules=submodules, subdir=subdir, subs=subs
        )
    if url:
        if len(sha256) != 64:
            raise RecipeError(
                f"{path}: source.sha256 is missing or not 64 hex digits; an sdist URL must be pinned "
                "by its hash (sha256sum the file)"
            )
        return Source("url", url, sha256=sha256, subdir=subdir, subs=subs)
    tree = (path.parent / local).resolve()
    if not tree.is_dir():
        raise RecipeError(f"{path}: source.path {local!r} is not a directory next to the recipe")
    return Source("path", str(tree), subdir=subdir, subs=subs)


def _subs(src: Table) -> tuple[SubSource, ...]:
    """[[source.sub]]: the further pinned trees, each with its archive's sha256 and the variable the
    build reads it from."""
    path = src.path
    out: list[SubSource] = []
    for i, entry in enumerate(src.get("sub", list, [])):
        t = Table(path, f"source.sub[{i}]", entry)
        name = t.get("name", str, required=True)
        env = t.get("env", str, required=True)
        if not env.isidentifier():
            raise RecipeError(f"{path}: source.sub[{i}].env {env!r} is not a variable name, e.g. VLLM_CUTLASS_SRC_DIR")
        sub = SubSource(
            name=name,
            env=env,
            repo=t.get("repo", str, required=True),
            commit=_hex(t, "commit", 40, "the full commit the archive holds"),
            archive=t.get("archive", str, required=True),
            sha256=_hex(t, "sha256", 64, "sha256sum the archive"),
            url=t.get("url", str, ""),
            patches=tuple(str(_patch(path, f"source.sub[{i}].patches", p)) for p in t.strings("patches")),
        )
        t.done()
        for other in out:
            if other.name == sub.name or other.env == sub.env:
                raise RecipeError(f"{path}: source.sub[{i}] repeats the name or env of {other.name!r}; each once")
        if "/" in name or name in ("", ".", ".."):
            raise RecipeError(f"{path}: source.sub[{i}].name {name!r} must be a plain name, e.g. cutlass")
        out.append(sub)
    return tuple(out)


def _hex(table: Table, key: str, length: int, fix: str) -> str:
    value = str(table.get(key, str, required=True))
    if len(value) != length or any(c not in "0123456789abcdef" for c in value):
        raise RecipeError(f"{table.path}: {table.name}.{key} must be {length} lowercase hex digits ({fix})")
    return value


def _build(top: Table) -> _Build:
    """[build]: what the build installs, runs and patches, how much memory a compile job takes and
    how much disk the whole build."""
    build = top.table("build")
    deps = tuple(canonicalize_name(d) for d in build.strings("deps"))
    run_deps = tuple(canonicalize_name(d) for d in build.strings("run_deps"))
    requires = build.strings("requires")
    frontend = _frontend(top.path, build.get("frontend", str, "build"))
    env = build.mapping("env")
    pre = build.strings("pre")
    patch_names = build.strings("patches")
    job_memory_gb = build.get("job_memory_gb", float, 2.0)
    disk_gb = build.get("disk_gb", float, 2.0)
    cross = build.get("cross", bool, False)
    abi3 = build.get("abi3", str, "")
    build.done()
    patches = tuple(_patch(top.path, "build.patches", p) for p in patch_names)
    return _Build(deps, run_deps, requires, frontend, env, pre, patches, job_memory_gb, disk_gb, cross, abi3)


def _frontend(path: Path, value: str) -> Frontend:
    for known in FRONTENDS:
        if value == known:
            return known
    raise RecipeError(f'{path}: build.frontend must be "build", "pip" or "cibuildwheel", not {value!r}')


def _patch(recipe: Path, key: str, name: str) -> Path:
    """A patch a recipe names: in recipes/patches/ beside the top-level recipes (examples may keep
    their own)."""
    found = next(
        (c for c in (recipe.parent / "patches" / name, DEFAULT_RECIPES / "patches" / name) if c.is_file()), None
    )
    if found is None:
        raise RecipeError(f"{recipe}: {key} names {name!r}, but recipes/patches/{name} does not exist")
    return found.resolve()


def _repair(top: Table, frontend: Frontend, source: Source) -> _Repair:
    """[repair]: what auditwheel must not graft, and whether the wheel may be manylinux (checked
    against the frontend: cibuildwheel makes manylinux wheels in its own container)."""
    path, rep = top.path, top.table("repair")
    out = _Repair(rep.strings("exclude"), rep.get("manylinux", bool, True), rep.get("reason", str, ""))
    rep.done()
    if frontend == "cibuildwheel" and source.subs:
        raise RecipeError(
            f"{path}: source.sub needs a runner's work directory; cibuildwheel builds in its own container"
        )
    if frontend == "cibuildwheel" and not out.manylinux:
        raise RecipeError(f"{path}: repair.manylinux = false, but cibuildwheel only makes manylinux wheels")
    if not out.manylinux and not out.reason:
        raise RecipeError(f"{path}: repair.reason is missing; say why this wheel cannot be manylinux")
    return out


def _verify(top: Table) -> tuple[tuple[str, ...], bool]:
    """[verify]: the extension modules the wheel must hold, and whether it must carry device code."""
    ver = top.table("verify")
    extensions = ver.strings("extensions")
    cuda = ver.get("cuda", bool, False)
    ver.done()
    return extensions, cuda


def _file_digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def load_recipes(root: Path | None = None) -> dict[str, Recipe]:
    """All recipes under root, keyed by canonical name.

    Validates the graph: every dependency has a recipe and there is no cycle.
    """
    root = root or recipes_root()
    recipes: dict[str, Recipe] = {}
    # recipes/<name>.toml and one level of grouping (recipes/examples/<name>.toml); deeper files are
    # the example sources' own pyproject.toml files
    for path in sorted([*root.glob("*.toml"), *root.glob("*/*.toml")]):
        if path.parent.name in ("profiles", "patches"):
            continue
        recipe = load_recipe(path)
        if recipe.key in recipes:
            raise RecipeError(f"{path}: package {recipe.name!r} is also defined in {recipes[recipe.key].path}")
        recipes[recipe.key] = recipe
    for r in recipes.values():
        for key, names in (("deps", r.deps), ("run_deps", r.run_deps)):
            for d in names:
                if d not in recipes:
                    raise RecipeError(
                        f"{r.path}: build.{key} names {d!r}, which has no recipe; add recipes/{d}.toml or remove it"
                    )
    _check_acyclic(recipes)
    return recipes


def _check_acyclic(recipes: Mapping[str, Recipe]) -> None:
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = " -> ".join([*trail[trail.index(name) :], name])
            raise RecipeError(
                f"{recipes[name].path}: dependency cycle {cycle}; remove one of these build.deps or build.run_deps"
            )
        state[name] = 1
        for d in (*recipes[name].deps, *recipes[name].run_deps):
            visit(d, [*trail, name])
        state[name] = 2

    for n in sorted(recipes):
        visit(n, [])
