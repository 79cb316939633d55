"""Recipes and profiles: the data model, loaded from TOML and validated.

A recipe says how to build one package; a profile pins the versions of a set of recipes that must
agree (one Triton release). Every error names the file, the key and the fix.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from .errors import RecipeError
from .locallabel import LocalLabel, parse_label
from .stepsource import SourceKind, SubSource
from .target import Target

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

_HERE = Path(__file__).resolve().parent
# The recipes that ship with jetwheel: package data (jetwheel/recipes/) in an installed wheel, the
# top-level recipes/ of a source checkout (which pyproject.toml maps into the wheel)
DEFAULT_RECIPES = next(
    (d for d in (_HERE / "recipes", _HERE.parent / "recipes") if (d / "profiles").is_dir()), _HERE / "recipes"
)


def _is_recipes(path: Path) -> bool:
    return (path / "profiles").is_dir() or any(path.glob("*.toml"))


def recipes_root(explicit: str | Path = "") -> Path:
    """Where recipes and profiles are read from, the first that is given or present: `explicit`
    (--recipes DIR), $JETWHEEL_RECIPES, ./recipes, then the bundled ones."""
    if explicit:
        return Path(explicit)
    if os.environ.get("JETWHEEL_RECIPES"):
        return Path(os.environ["JETWHEEL_RECIPES"])
    here = Path("recipes")
    return here.resolve() if _is_recipes(here) else DEFAULT_RECIPES


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
    requires: tuple[str, ...]  # build tools installed into the build env (pip requirement strings)
    frontend: Frontend
    env: Mapping[str, str]
    pre: tuple[str, ...]  # shell commands run in the source tree before the build
    patches: tuple[Path, ...]
    job_memory_gb: float  # peak memory of one compile job; MAX_JOBS is derived from it
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
class TritonRelease:
    """How Triton's build.py is asked for an image that installs this profile from our index."""

    release: str  # the server repo branch, e.g. r25.04
    target_platform: str  # igpu for Jetson
    backends: tuple[str, ...]  # e.g. ("python", "vllm")
    endpoints: tuple[str, ...]  # e.g. ("http", "grpc")
    features: tuple[str, ...]  # build.py --enable-* flags, e.g. ("logging", "stats", "metrics")
    runtime: tuple[str, ...]  # names installed from the requirements secret (the rest come by URL)
    nvpl_slim: str  # filename of the NVPL slim tarball on the index ("" where not needed)
    # build.py's `--image base,` and `--image gpu-base,`: with --enable-gpu it starts from the
    # server's py3-min image whatever --target-platform says, so the igpu one must be named
    base_image: str = ""
    target_machine: str = ""  # build.py --target-machine ("" leaves it to the machine running it)
    smoke: Smoke | None = None  # what `inv triton.check --image` tries inside the built image


@dataclass(frozen=True)
class Smoke:
    """The stack's module names for the smoke test inside the built image (the profile's [triton.smoke])."""

    imports: tuple[str, ...]  # modules imported, in order (torch before what links it)
    extensions: tuple[str, ...]  # compiled modules loaded (vllm._C)
    lookups: tuple[str, ...]  # Python expressions over the imported modules that must be true (an op registered)
    gpu: str  # one CUDA operation, a Python expression that must be true (run with --gpu only)


@dataclass(frozen=True)
class Profile:
    """A set of pinned versions that must agree, and the target they are built for."""

    name: str
    path: Path
    python: str  # "3.12", or "current" for the interpreter running jetwheel
    python_exe: str  # the interpreter to build with inside the runner
    platform: str  # wheel platform tag, e.g. linux_aarch64; "current" for this machine
    cuda_arch: str  # TORCH_CUDA_ARCH_LIST value, e.g. "8.7"
    cuda: str  # CUDA toolkit of the target, e.g. "12.6"; "" when the stack has no device code
    jetpack: str
    l4t: str
    base_image: str
    image: str  # the builder image the docker runner uses
    local_version: str  # PEP 440 local label appended to built versions, e.g. jp62.cu126
    top: str  # the requirement the whole profile exists for, e.g. vllm==0.8.1
    versions: Mapping[NormalizedName, str]  # canonical name -> version
    env: Mapping[str, str]
    system_libs: Mapping[str, tuple[str, ...]]  # soname glob -> symbol patterns the target provides
    system_versions: Mapping[str, str]  # symbol version family (GLIBC, GLIBCXX, ...) -> newest provided
    notes: Mapping[str, str]  # name -> why the pin differs from upstream's, or evidence
    triton: TritonRelease | None = None  # the Triton Inference Server release this profile serves

    @property
    def python_version(self) -> str:
        if self.python == "current":
            return f"{sys.version_info.major}.{sys.version_info.minor}"
        return self.python

    @property
    def platform_tag(self) -> str:
        if self.platform == "current":
            return f"linux_{platform.machine()}"
        return self.platform

    @property
    def arch(self) -> str:
        """The machine part of the platform tag: aarch64, x86_64."""
        return self.platform_tag.split("_", 1)[1]

    def target(self, cuda_arch: str = "") -> Target:
        """What this profile's wheels must run on (`cuda_arch` overrides the profile's GPU)."""
        return Target(
            python=self.python_version,
            platform=self.platform_tag,
            cuda_arch=cuda_arch or self.cuda_arch,
            cuda=self.cuda,
            system_libs=dict(self.system_libs),
            system_versions=dict(self.system_versions),
            pins={str(k): v for k, v in self.versions.items()},
            glibc=self.system_versions.get("GLIBC", "2.35"),
        )

    def pin(self, name: str) -> str:
        try:
            return self.versions[canonicalize_name(name)]
        except KeyError:
            raise RecipeError(f'{self.path}: [versions] has no pin for {name!r}; add `{name} = "X.Y.Z"`') from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return dict(tomllib.load(f))
    except FileNotFoundError:
        raise RecipeError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"{path}: malformed TOML ({e}); fix the syntax") from None


class _Table:
    """Reads one TOML table, remembering which keys were used so unknown keys can be named."""

    def __init__(self, path: Path, name: str, data: Any) -> None:
        if not isinstance(data, dict):
            raise RecipeError(f"{path}: [{name}] must be a table")
        self.path, self.name, self.data = path, name, data
        self.used: set[str] = set()

    def _where(self, key: str) -> str:
        return f"{self.path}: {self.name}.{key}" if self.name else f"{self.path}: {key}"

    def get(self, key: str, kind: type, default: Any = None, required: bool = False) -> Any:
        self.used.add(key)
        if key not in self.data:
            if required:
                raise RecipeError(f"{self._where(key)} is missing; add it ({kind.__name__})")
            return default
        value = self.data[key]
        if kind is float and isinstance(value, int):
            value = float(value)
        if not isinstance(value, kind):
            raise RecipeError(f"{self._where(key)} must be a {kind.__name__}, not {type(value).__name__}")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.get(key, list, [])
        if not all(isinstance(v, str) for v in value):
            raise RecipeError(f"{self._where(key)} must be a list of strings")
        return tuple(value)

    def mapping(self, key: str) -> dict[str, str]:
        value = self.get(key, dict, {})
        if not all(isinstance(v, str) for v in value.values()):
            raise RecipeError(f'{self._where(key)} values must be strings (quote numbers: "1")')
        return dict(value)

    def table(self, key: str) -> _Table:
        self.used.add(key)
        return _Table(self.path, f"{self.name}.{key}" if self.name else key, self.data.get(key, {}))

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            known = ", ".join(sorted(self.used))
            raise RecipeError(f"{self._where(unknown[0])}: unknown key; known keys here: {known}")


def _frontend(path: Path, value: str) -> Frontend:
    for known in FRONTENDS:
        if value == known:
            return known
    raise RecipeError(f'{path}: build.frontend must be "build", "pip" or "cibuildwheel", not {value!r}')


def _file_digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def load_recipe(path: Path) -> Recipe:
    """Load one recipe file; raise RecipeError naming file, key and fix."""
    path = path.resolve()
    top = _Table(path, "", _read_toml(path))
    pkg = top.table("package")
    name = pkg.get("name", str, required=True)
    summary = pkg.get("summary", str, "")
    notes = pkg.get("notes", str, "")
    local_version = parse_label(
        path, pkg.get("local_version", str, "profile"), pkg.get("local_version_unless_cuda", str, "")
    )
    pkg.done()

    src = top.table("source")
    git, url, local = src.get("git", str), src.get("url", str), src.get("path", str)
    given = [k for k, v in (("git", git), ("url", url), ("path", local)) if v]
    if len(given) != 1:
        raise RecipeError(f"{path}: source needs exactly one of git, url or path (found {given or 'none'})")
    ref = src.get("ref", str, "")
    sha256 = src.get("sha256", str, "")
    commit = src.get("commit", str, "")
    submodules = src.get("submodules", bool, False)
    subdir = src.get("subdir", str, "")
    subs = _subs(path, src)
    src.done()
    if git:
        if not ref:
            raise RecipeError(f'{path}: source.ref is missing; pin a tag or commit, e.g. ref = "v{{version}}"')
        if sha256 and len(sha256) != 64:
            raise RecipeError(f"{path}: source.sha256 must be 64 hex digits (inv sources.fetch prints it)")
        source = Source(
            "git", git, ref=ref, sha256=sha256, commit=commit, submodules=submodules, subdir=subdir, subs=subs
        )
    elif url:
        if len(sha256) != 64:
            raise RecipeError(
                f"{path}: source.sha256 is missing or not 64 hex digits; an sdist URL must be pinned "
                "by its hash (sha256sum the file)"
            )
        source = Source("url", url, sha256=sha256, subdir=subdir, subs=subs)
    else:
        tree = (path.parent / local).resolve()
        if not tree.is_dir():
            raise RecipeError(f"{path}: source.path {local!r} is not a directory next to the recipe")
        source = Source("path", str(tree), subdir=subdir, subs=subs)

    build = top.table("build")
    deps = tuple(canonicalize_name(d) for d in build.strings("deps"))
    requires = build.strings("requires")
    frontend = _frontend(path, build.get("frontend", str, "build"))
    env = build.mapping("env")
    pre = build.strings("pre")
    patch_names = build.strings("patches")
    job_memory_gb = build.get("job_memory_gb", float, 2.0)
    cross = build.get("cross", bool, False)
    abi3 = build.get("abi3", str, "")
    build.done()
    patches = [_patch(path, "build.patches", p) for p in patch_names]

    rep = top.table("repair")
    exclude = rep.strings("exclude")
    manylinux = rep.get("manylinux", bool, True)
    reason = rep.get("reason", str, "")
    rep.done()
    if frontend == "cibuildwheel" and source.subs:
        raise RecipeError(
            f"{path}: source.sub needs a runner's work directory; cibuildwheel builds in its own container"
        )
    if frontend == "cibuildwheel" and not manylinux:
        raise RecipeError(f"{path}: repair.manylinux = false, but cibuildwheel only makes manylinux wheels")
    if not manylinux and not reason:
        raise RecipeError(f"{path}: repair.reason is missing; say why this wheel cannot be manylinux")

    ver = top.table("verify")
    extensions = ver.strings("extensions")
    cuda = ver.get("cuda", bool, False)
    ver.done()
    top.done()

    return Recipe(
        name=name,
        path=path,
        summary=summary,
        source=source,
        deps=deps,
        requires=requires,
        frontend=frontend,
        env=env,
        pre=pre,
        patches=tuple(patches),
        job_memory_gb=job_memory_gb,
        cross=cross,
        exclude=exclude,
        manylinux=manylinux,
        manylinux_reason=reason,
        extensions=extensions,
        cuda=cuda,
        abi3=abi3,
        local_version=local_version,
        notes=notes,
        digest=_file_digest([path, *patches, *(Path(p) for sub in subs for p in sub.patches)]),
    )


def _patch(recipe: Path, key: str, name: str) -> Path:
    """A patch a recipe names: in recipes/patches/ beside the top-level recipes (examples may keep
    their own)."""
    found = next(
        (c for c in (recipe.parent / "patches" / name, DEFAULT_RECIPES / "patches" / name) if c.is_file()), None
    )
    if found is None:
        raise RecipeError(f"{recipe}: {key} names {name!r}, but recipes/patches/{name} does not exist")
    return found.resolve()


def _hex(table: _Table, key: str, length: int, fix: str) -> str:
    value = str(table.get(key, str, required=True))
    if len(value) != length or any(c not in "0123456789abcdef" for c in value):
        raise RecipeError(f"{table.path}: {table.name}.{key} must be {length} lowercase hex digits ({fix})")
    return value


def _subs(path: Path, src: _Table) -> tuple[SubSource, ...]:
    """[[source.sub]]: the further pinned trees, each with its archive's sha256 and the variable the
    build reads it from."""
    entries = src.get("sub", list, [])
    out: list[SubSource] = []
    for i, entry in enumerate(entries):
        t = _Table(path, f"source.sub[{i}]", entry)
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
        for d in r.deps:
            if d not in recipes:
                raise RecipeError(
                    f"{r.path}: build.deps names {d!r}, which has no recipe; add recipes/{d}.toml or remove it"
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
            raise RecipeError(f"{recipes[name].path}: dependency cycle {cycle}; remove one of these build.deps")
        state[name] = 1
        for d in recipes[name].deps:
            visit(d, [*trail, name])
        state[name] = 2

    for n in sorted(recipes):
        visit(n, [])


def load_profile(name: str, root: Path | None = None) -> Profile:
    """Load recipes/profiles/<name>.toml (or a path to a profile file)."""
    root = root or recipes_root()
    path = Path(name) if name.endswith(".toml") else root / "profiles" / f"{name}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in (root / "profiles").glob("*.toml"))
        raise RecipeError(f"unknown profile {name!r}; known profiles: {', '.join(known) or 'none'}")
    path = path.resolve()
    top = _Table(path, "", _read_toml(path))
    prof = top.table("profile")
    data = {
        k: prof.get(k, str, "")
        for k in ("python_exe", "cuda", "jetpack", "l4t", "base_image", "image", "local_version")
    }
    pname = prof.get("name", str, path.stem)
    python = prof.get("python", str, required=True)
    plat = prof.get("platform", str, required=True)
    arch = prof.get("cuda_arch", str, "")
    top_req = prof.get("top", str, required=True)
    prof.done()
    versions = {canonicalize_name(k): v for k, v in _versions(top).items()}
    for k, v in versions.items():
        try:
            Version(v)
        except InvalidVersion:
            raise RecipeError(f"{path}: versions.{k} = {v!r} is not a PEP 440 version") from None
    env = top.table("env")
    env_map = {k: env.get(k, str) for k in env.data}
    env.done()
    system = top.table("system")
    libs = system.get("libs", dict, {})
    system_libs = {}
    for soname, pats in libs.items():
        if not isinstance(pats, list) or not all(isinstance(x, str) for x in pats):
            raise RecipeError(f"{path}: system.libs.{soname} must be a list of symbol patterns")
        system_libs[soname] = tuple(pats)
    system_versions = system.mapping("versions")
    if "GLIBC" not in system_versions:
        raise RecipeError(f'{path}: system.versions.GLIBC is missing; give the target\'s glibc, e.g. "2.35"')
    system.done()
    notes = top.table("notes")
    notes_map = {k: notes.get(k, str) for k in notes.data}
    notes.done()
    triton = _triton(top) if "triton" in top.data else None
    top.done()
    return Profile(
        name=pname,
        path=path,
        python=python,
        python_exe=data["python_exe"] or f"python{python}",
        platform=plat,
        cuda_arch=arch,
        cuda=data["cuda"],
        jetpack=data["jetpack"],
        l4t=data["l4t"],
        base_image=data["base_image"],
        image=data["image"],
        local_version=data["local_version"],
        top=top_req,
        versions=versions,
        env=env_map,
        system_libs=system_libs,
        system_versions=system_versions,
        notes=notes_map,
        triton=triton,
    )


def _triton(top: _Table) -> TritonRelease:
    t = top.table("triton")
    release = t.get("release", str, required=True)
    out = TritonRelease(
        release=release,
        target_platform=t.get("target_platform", str, "igpu"),
        backends=t.strings("backends"),
        endpoints=t.strings("endpoints"),
        features=t.strings("features"),
        runtime=tuple(canonicalize_name(n) for n in t.strings("runtime")),
        nvpl_slim=t.get("nvpl_slim", str, ""),
        base_image=t.get("base_image", str, ""),
        target_machine=t.get("target_machine", str, ""),
        smoke=_smoke(t.table("smoke")) if "smoke" in t.data else None,
    )
    t.done()
    return out


def _smoke(t: _Table) -> Smoke:
    out = Smoke(t.strings("imports"), t.strings("extensions"), t.strings("lookups"), t.get("gpu", str, ""))
    t.done()
    if not out.imports:
        raise RecipeError(f"{t.path}: triton.smoke.imports is empty; name the stack's modules")
    return out


def _versions(top: _Table) -> dict[str, str]:
    t = top.table("versions")
    out = {k: t.get(k, str) for k in t.data}
    t.done()
    return out
