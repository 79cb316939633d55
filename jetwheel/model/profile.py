"""Profiles: a set of pinned versions that must agree (one Triton release), and the target they are
built for, loaded from recipes/profiles/<name>.toml and validated. Every error names the file, the
key and the fix."""

from __future__ import annotations

import platform
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from jetwheel.errors import RecipeError
from jetwheel.model.schema import Table, read_toml, recipes_root
from jetwheel.target import Target


@dataclass(frozen=True)
class Smoke:
    """The stack's module names for the smoke test inside the built image (the profile's [triton.smoke])."""

    imports: tuple[str, ...]  # modules imported, in order (torch before what links it)
    extensions: tuple[str, ...]  # compiled modules loaded (vllm._C)
    lookups: tuple[str, ...]  # Python expressions over the imported modules that must be true (an op registered)
    gpu: str  # one CUDA operation, a Python expression that must be true (run with --gpu only)


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
    # projects the image already has (a sysroot's torch): never built, seen by builds through a
    # venv with the image's site-packages, and dropped from the pip installs of build steps
    provided: tuple[NormalizedName, ...] = ()

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
            provided=tuple(str(n) for n in self.provided),
        )

    def provides(self, requirement: str) -> bool:
        """The requirement (`numpy<2`) names a project the profile's image provides."""
        name = re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]
        return canonicalize_name(name) in self.provided

    def pin(self, name: str) -> str:
        try:
            return self.versions[canonicalize_name(name)]
        except KeyError:
            raise RecipeError(f'{self.path}: [versions] has no pin for {name!r}; add `{name} = "X.Y.Z"`') from None


def load_profile(name: str, root: Path | None = None) -> Profile:
    """Load recipes/profiles/<name>.toml (or a path to a profile file)."""
    root = root or recipes_root()
    path = Path(name) if name.endswith(".toml") else root / "profiles" / f"{name}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in (root / "profiles").glob("*.toml"))
        raise RecipeError(f"unknown profile {name!r}; known profiles: {', '.join(known) or 'none'}")
    path = path.resolve()
    top = Table(path, "", read_toml(path))
    head, provided = _profile(top)
    versions = _versions(top)
    env = _free_strings(top, "env")
    system_libs, system_versions = _system(top)
    notes = _free_strings(top, "notes")
    triton = _triton(top) if "triton" in top.data else None
    top.done()
    return Profile(
        path=path,
        **head,
        versions=versions,
        env=env,
        system_libs=system_libs,
        system_versions=system_versions,
        notes=notes,
        triton=triton,
        provided=provided,
    )


def _profile(top: Table) -> tuple[dict[str, str], tuple[NormalizedName, ...]]:
    """[profile]: the target and the images, each a string field of Profile, and what the image provides."""
    prof = top.table("profile")
    provided = tuple(canonicalize_name(n) for n in prof.strings("provided"))
    out = {
        k: prof.get(k, str, "")
        for k in ("python_exe", "cuda", "jetpack", "l4t", "base_image", "image", "local_version")
    }
    out["name"] = prof.get("name", str, top.path.stem)
    out["python"] = prof.get("python", str, required=True)
    out["platform"] = prof.get("platform", str, required=True)
    out["cuda_arch"] = prof.get("cuda_arch", str, "")
    out["top"] = prof.get("top", str, required=True)
    prof.done()
    out["python_exe"] = out["python_exe"] or f"python{out['python']}"
    return out, provided


def _free_strings(top: Table, name: str) -> dict[str, str]:
    """A table whose keys are the user's ([versions], [env], [notes]) and whose values are strings."""
    t = top.table(name)
    out = {k: t.get(k, str) for k in t.data}
    t.done()
    return out


def _versions(top: Table) -> dict[NormalizedName, str]:
    """[versions]: canonical name -> PEP 440 version."""
    versions = {canonicalize_name(k): v for k, v in _free_strings(top, "versions").items()}
    for k, v in versions.items():
        try:
            Version(v)
        except InvalidVersion:
            raise RecipeError(f"{top.path}: versions.{k} = {v!r} is not a PEP 440 version") from None
    return versions


def _system(top: Table) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """[system]: the libraries (soname -> symbol patterns) and symbol versions the target provides."""
    system = top.table("system")
    libs = system.get("libs", dict, {})
    system_libs = {}
    for soname, pats in libs.items():
        if not isinstance(pats, list) or not all(isinstance(x, str) for x in pats):
            raise RecipeError(f"{top.path}: system.libs.{soname} must be a list of symbol patterns")
        system_libs[soname] = tuple(pats)
    system_versions = system.mapping("versions")
    if "GLIBC" not in system_versions:
        raise RecipeError(f'{top.path}: system.versions.GLIBC is missing; give the target\'s glibc, e.g. "2.35"')
    system.done()
    return system_libs, system_versions


def _triton(top: Table) -> TritonRelease:
    """[triton]: how build.py is asked for the image, and [triton.smoke]."""
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


def _smoke(t: Table) -> Smoke:
    out = Smoke(t.strings("imports"), t.strings("extensions"), t.strings("lookups"), t.get("gpu", str, ""))
    t.done()
    if not out.imports:
        raise RecipeError(f"{t.path}: triton.smoke.imports is empty; name the stack's modules")
    return out
