"""Preflight of a step's source side: its source and sub-sources where the engine will take them
from and matching their pins, its patches applying, and its build backend's requirements among what
the step installs. Each check returns a Check; none raises for what it checks."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from jetwheel.build.check import Check
from jetwheel.build.plan import BUILD_TOOLS, tree_digest
from jetwheel.errors import JetwheelError
from jetwheel.model.recipe import Recipe
from jetwheel.model.step import BuildStep
from jetwheel.model.stepsource import StepSource, SubSource
from jetwheel.sources.archives import unpack_members
from jetwheel.sources.fetch import LocalArchive, Lookup, Place, Upstream, fetch_source, locate
from jetwheel.sources.subsources import pinned_sub, sub_archive

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

GIT_TIMEOUT = 30


def source_check(step: BuildStep, lookup: Lookup, scratch: Path) -> tuple[Check, Path | None]:
    """Reachable where the engine will take it from (local source dir, index, upstream) and matching
    its pin; returns the laid-out tree to try the patches on. A git source that only upstream has is
    checked with ls-remote instead of a clone (torch's takes longer than a whole preflight)."""
    src, name = step.source, f"{step.name}: source"
    if src.kind == "path":
        root = Path(src.path)
        if not root.is_dir():
            return Check(name, False, f"{root} does not exist", "fix the recipe's source.path"), None
        if tree_digest(root) != src.digest:
            return Check(name, False, f"{root} changed since the plan was made", "plan again"), None
        return Check(name, True, f"{root} (tree digest {src.digest[:12]})"), root
    if src.kind == "git" and isinstance(locate(step.name, step.pin, src, lookup), Upstream):
        return _git_check(name, src), None
    try:
        got = fetch_source(step.name, step.pin, src, scratch / step.name, lookup)
    except JetwheelError as e:
        return Check(
            name, False, str(e), "fix the recipe's source.sha256, or replace the archive (inv sources.fetch)"
        ), None
    return Check(name, True, f"{got.origin}: sha256 {got.sha256[:12]}... matches the pin"), got.tree


def sub_checks(step: BuildStep, lookup: Lookup, scratch: Path) -> list[Check]:
    """Each sub-source: its archive where the build will take it from, matching its sha256, and its
    patches applying to the files they touch (CUTLASS and flash-attention are thousands of files:
    only those are unpacked)."""
    out = []
    for sub in step.source.subs:
        name = f"{step.name}: sub-source {sub.name}"
        try:
            found = pinned_sub(sub, lookup)
        except JetwheelError as e:
            fix = "put the pinned archive there (inv sources.fetch, inv sources.upload), or fix the recipe's sha256"
            out.append(Check(name, False, str(e), fix))
            continue
        where = f"{sub.repo} @ {sub.commit[:12]}; ${sub.env}"
        out.append(Check(name, True, f"{found.origin}: sha256 {sub.sha256[:12]}... matches the pin ({where})"))
        out.append(_sub_patches_check(sub, f"{name} patches", found, lookup, scratch))
    return out


def _sub_patches_check(sub: SubSource, name: str, found: Place, lookup: Lookup, scratch: Path) -> Check:
    """The patches tried on the files they touch; a local archive is read where it lies, any other
    is fetched first."""
    if not sub.patches:
        return patches_check(name, [], None)
    try:
        archive = found.path if isinstance(found, LocalArchive) else sub_archive(sub, scratch / "archives", lookup).path
        tree = unpack_members(archive, _patched_files(sub.patches), scratch / "sub" / sub.name)
    except JetwheelError as e:
        return Check(name, False, f"not tried: {e}", "fix the archive first")
    return patches_check(name, [Path(p) for p in sub.patches], tree)


def _patched_files(patches: Iterable[str]) -> set[str]:
    """The files (below the tree's top) that -p1 patches name."""
    names = set()
    for p in patches:
        for line in Path(p).read_text(errors="replace").splitlines():
            if line.startswith(("--- ", "+++ ")):
                path = line[4:].split("\t")[0].strip()
                if path != "/dev/null":
                    names.add(path.split("/", 1)[1] if "/" in path else path)
    return names


def _git_check(name: str, src: StepSource) -> Check:
    try:
        done = subprocess.run(
            ["git", "ls-remote", "--exit-code", src.url, src.ref, f"{src.ref}^{{}}"],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin:/usr/local/bin"},
        )
    except subprocess.TimeoutExpired:
        return Check(name, False, f"{src.url}: no answer in {GIT_TIMEOUT}s", _GIT_FIX)
    if done.returncode == 2:
        return Check(name, False, f"{src.url} has no ref {src.ref}", "fix the recipe's source.ref")
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["?"])[-1]
        return Check(name, False, f"{src.url} unreachable: {why}", _GIT_FIX)
    return Check(name, True, f"{src.url} has {src.ref} ({done.stdout.split()[0][:12]})")


_GIT_FIX = (
    "check the network to the git host, or put the source archive in the sources directory or on the index "
    "(inv sources.fetch --from CHECKOUT, inv sources.upload)"
)


def patches_check(name: str, patches: list[Path], tree: Path | None) -> Check:
    """The patches apply, in order, to the laid-out tree (a dry run each: a later patch of the same
    file is tried against the unpatched file)."""
    if not patches:
        return Check(name, True, "none")
    if tree is None:
        return Check(name, True, f"{len(patches)} not tried: the source is a git ref, cloned at build time")
    for p in patches:
        done = subprocess.run(
            ["patch", "--dry-run", "-p1", "--forward", "-d", str(tree), "-i", str(p)], capture_output=True, text=True
        )
        if done.returncode != 0:
            why = next((ln for ln in done.stdout.splitlines() if "FAILED" in ln or "can't" in ln), "")
            return Check(
                name,
                False,
                f"{p.name} does not apply: {why or done.stdout.strip()[-200:]}",
                f"rebase {p} on the pinned source",
            )
    return Check(name, True, f"{len(patches)} apply cleanly")


def backend_requires(tree: Path, subdir: str) -> list[str] | None:
    """[build-system].requires of the project in a source tree; None if there is none."""
    try:
        text = (tree / subdir / "pyproject.toml").read_text()
        return [str(r) for r in tomllib.loads(text).get("build-system", {}).get("requires", [])]
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None


def backend_check(step: BuildStep, recipe: Recipe, tree: Path | None, provided: Iterable[str] = ()) -> Check | None:
    """The build runs without isolation: everything the project's build backend requires must be
    among what the step installs (xgrammar 0.1.16 needs pybind11, not nanobind) or what the
    profile's image provides (a sysroot's torch)."""
    if tree is None or recipe.frontend == "cibuildwheel":
        return None
    wanted = backend_requires(tree, recipe.subdir or ".")
    if wanted is None:
        return None
    installed = {canonicalize_name(Requirement(r).name) for r in [*BUILD_TOOLS, *recipe.requires]}
    installed |= {canonicalize_name(d) for d in [*step.deps, *provided]}
    missing = [r for r in wanted if canonicalize_name(Requirement(r).name) not in installed]
    name = f"{step.name}: build backend requires"
    if missing:
        return Check(
            name,
            False,
            f"pyproject.toml's build-system needs {', '.join(missing)}, which the step does not install "
            "(the build runs without isolation)",
            f"add {', '.join(missing)} to the recipe's build.requires",
        )
    return Check(name, True, ", ".join(wanted) or "nothing")
