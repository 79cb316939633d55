"""verify: find, before anyone deploys, what would fail at run time on the target.

One module per check (fatbin, extensions, abi, pins, resolve); each returns Findings. This module
gathers the set of wheels pip would install together and runs the checks over it. Wheels are read
as facts (extract.py): from the local fact cache, from the index's facts for a published wheel
(checked against the sha256 the index publishes for the file pip would install), or by inflating
the wheel once. Dependency wheels come through a `WheelSource` (source.py), never an index client.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterable
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from jetwheel.errors import JetwheelError
from jetwheel.model.recipe import Recipe
from jetwheel.target import Target
from jetwheel.verify import abi, extensions, fatbin, pins, resolve
from jetwheel.verify.extract import read_wheels
from jetwheel.verify.factcache import FactCache
from jetwheel.verify.loader import Loader
from jetwheel.verify.report import ERROR, INFO, WARNING, Check, Finding, Report
from jetwheel.verify.source import Published, WheelSource
from jetwheel.verify.wheel import Wheel, from_bytes

CHECKS: tuple[Check, ...] = ("fatbin", "extensions", "abi", "pins")
# The dynamic loader's name on each machine: a profile's system table names its own machine's.
LOADERS = {"aarch64": "ld-linux-aarch64.so.1", "x86_64": "ld-linux-x86-64.so.2"}


def retarget(target: Target, platform: str) -> Target:
    """The same pins and system policy on another machine (e.g. PyPI's x86_64 wheels checked
    with triton-25.04's pins): the platform tag and the loader's name in the system table change."""
    if not platform or platform == target.platform:
        return target
    machine = platform.removeprefix("linux_")
    if machine not in LOADERS or not platform.startswith("linux_"):
        raise JetwheelError(f"--platform {platform}: give linux_<machine>, one of {', '.join(sorted(LOADERS))}")
    old, new = LOADERS.get(target.machine), LOADERS.get(machine)
    libs = {(new if k == old and new else k): v for k, v in target.system_libs.items()}
    return dataclasses.replace(target, platform=platform, system_libs=libs)


def check_fatbin(
    wheel: Wheel, target: Target, must_have_cuda: bool, needed: set[str]
) -> tuple[list[Finding], dict[str, list[str]]]:
    """Catches `CUDA error: no kernel image is available for execution on the device`. A module
    nothing promised loads (vLLM's Hopper-only _flashmla_C, imported only on sm_90) gets a warning."""
    findings: list[Finding] = []
    facts: dict[str, list[str]] = {}
    cc = int(target.cuda_arch.replace(".", "").removesuffix("+PTX")) if target.cuda_arch else 0
    for e in wheel.elves:
        if not e.fatbin:
            continue
        facts[e.member] = sorted({x.label() for x in e.fatbin})
        if not cc:
            continue
        ok, how = fatbin.runs_on(list(e.fatbin), cc, target.cuda)
        if not ok:
            findings.append(
                Finding(
                    "fatbin",
                    ERROR if e.member in needed else WARNING,
                    e.member,
                    f"no kernel image for sm_{cc}: it carries {', '.join(facts[e.member])}"
                    + (f"; {how}" if how else "")
                    + ("" if e.member in needed else "; nothing the recipe promises loads it"),
                    f"build with TORCH_CUDA_ARCH_LIST={target.cuda_arch} (or ship compute_{cc} PTX); the profile "
                    "sets it: check the build honoured it (a library with its own arch list, such as "
                    "flash-attention's, needs a patch)"
                    if cc in fatbin.TEGRA
                    else f"rebuild with TORCH_CUDA_ARCH_LIST={target.cuda_arch} (the profile sets it; check the "
                    "build honoured it)",
                )
            )
    if must_have_cuda and not facts:
        findings.append(
            Finding(
                "fatbin",
                ERROR,
                wheel.filename,
                "no CUDA code at all: this is a CPU-only build, and the GPU would not be used "
                f"(no ELF file in the wheel carries a CUDA fatbin; the recipe promises CUDA code for sm_{cc})",
                f"use the wheel built for the target (inv build-wheel {wheel.name} --profile ...), installed from "
                "the jetwheel index; PyPI's aarch64 torch, torchvision and torchaudio wheels are CPU-only",
            )
        )
    return findings, facts


def closure(
    wheel: Wheel, given: Iterable[Wheel], source: WheelSource | None, target: Target, cache: FactCache, downloads: Path
) -> tuple[list[Wheel], list[Finding]]:
    """The dependency wheels pip would install with `wheel`: given ones first, the rest from the
    source. Only names the profile pins are fetched: those are the ones carrying shared libraries
    we link; a project the target's system provides (a sysroot's torch) is the system's libraries."""
    have = {w.name: w for w in given}
    have.pop(wheel.name, None)
    findings: list[Finding] = []
    env = target.environment()
    queue = list(wheel.requires)
    tags = target.tags()
    while queue:
        req = Requirement(queue.pop(0))
        name = canonicalize_name(req.name)
        if (req.marker and not req.marker.evaluate(env)) or name in have or name == wheel.name:
            continue
        if name not in target.pins or name in target.provided or source is None:
            continue
        found = source.find(str(req), tags)
        if found is None:
            findings.append(
                Finding(
                    "abi",
                    ERROR,
                    wheel.filename,
                    f"dependency {req} has no wheel on {source.url} "
                    f"for cp{target.python.replace('.', '')} {target.platform}",
                    f"publish {name} first (inv build-wheel {name})",
                )
            )
            continue
        dep = published_facts(found, source, cache, downloads)
        have[name] = dep
        queue += dep.requires
    return list(have.values()), findings


def published_facts(found: Published, source: WheelSource, cache: FactCache, downloads: Path) -> Wheel:
    """A published wheel's facts: from the local cache, or from the index when a builder published
    the file and the facts are for the very file pip would install (same sha256), else read from
    the downloaded file. Facts from the network are used once and never enter the local cache: it
    holds only what this machine read itself."""
    known = cache.get(found.sha256) if found.sha256 else None
    if known is None and found.trusted and found.sha256 and (data := source.facts(found.filename)) is not None:
        try:
            known = from_bytes(data)
        except ValueError:
            known = None
        if known is not None and known.sha256 != found.sha256:
            known = None
    if known is not None:
        return dataclasses.replace(known, filename=found.filename)
    return read_wheels([source.download(found.filename, downloads)], cache)[0]


def verify_wheel(  # params: the wheel, its target and recipe, and where its dependencies come from
    wheel: Wheel | Path,
    target: Target,
    recipe: Recipe | None = None,
    given: Iterable[Wheel] = (),
    source: WheelSource | None = None,
    cache: FactCache | None = None,
    downloads: Path | None = None,
) -> Report:
    """Run every check on one wheel (its facts from read_wheels, or its file: reading torch takes
    seconds the first time) against the wheels `given` and, for the rest of its pins, those of `source`."""
    cache = cache or FactCache()
    if not isinstance(wheel, Wheel):
        wheel = read_wheels([wheel], cache)[0]
    report = Report(wheel=wheel.filename, checks=list(CHECKS))
    with tempfile.TemporaryDirectory(prefix="jetwheel-deps-") as tmp:
        deps, missing = closure(wheel, given, source, target, cache, downloads or Path(tmp))
    modules = recipe.extensions if recipe else ()
    loader = Loader([wheel, *deps], target)
    needed = abi.required(loader, wheel, modules)
    found, facts = check_fatbin(wheel, target, bool(recipe and recipe.cuda), needed)
    report.findings += found
    if facts:
        report.facts["fatbin"] = facts
    report.findings += extensions.check(wheel, modules, target)
    if wheel.machine and not target.platform.endswith(wheel.machine):
        report.findings.append(
            Finding(
                "extensions",
                ERROR,
                wheel.filename,
                f"wheel is for {wheel.machine}, the target is {target.platform}",
                "verify it for its own machine with --platform linux_" + wheel.machine,
            )
        )
    report.findings += missing
    report.findings += abi.check(wheel, loader, target, needed)
    report.findings += pins.check([wheel, *deps], target.pins, target.python, target.machine)
    report.facts["closure"] = sorted(f"{w.name}=={w.version}" for w in deps)
    return report


def resolve_report(requirement: str, index_url: str, target: Target) -> Report:
    report = Report(wheel=requirement, checks=["resolve"])
    findings, got = resolve.resolve([requirement], index_url, target)
    report.findings += findings
    if got:
        report.facts["resolve"] = got
        report.findings.append(Finding("resolve", INFO, requirement, f"resolves to {', '.join(got)}"))
    return report


__all__ = [
    "ERROR",
    "FactCache",
    "Finding",
    "Published",
    "Report",
    "Target",
    "Wheel",
    "WheelSource",
    "published_facts",
    "read_wheels",
    "resolve_report",
    "retarget",
    "verify_wheel",
]
