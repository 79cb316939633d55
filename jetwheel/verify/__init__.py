"""verify: find, before anyone deploys, what would fail at run time on the Jetson.

One module per check (fatbin, extensions, abi, pins, resolve); each returns Findings. This module
only gathers the set of wheels pip would install together and runs the checks over it."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ..index.client import IndexClient
from ..recipe import Recipe
from ..target import Target
from . import abi, extensions, fatbin, pins, resolve
from .report import ERROR, INFO, Finding, Report
from .wheel import Wheel, open_wheel

CHECKS = ("fatbin", "extensions", "abi", "pins")


def check_fatbin(wheel: Wheel, target: Target, must_have_cuda: bool) -> tuple[list[Finding], dict[str, list[str]]]:
    """Catches `CUDA error: no kernel image is available for execution on the device`."""
    findings: list[Finding] = []
    facts: dict[str, list[str]] = {}
    cc = int(target.cuda_arch.replace(".", "").removesuffix("+PTX")) if target.cuda_arch else 0
    for e in wheel.elves:
        if not e.fatbin:
            continue
        facts[e.member] = sorted({x.label() for x in e.fatbin})
        if not cc:
            continue
        ok, how = fatbin.runs_on(e.fatbin, cc, target.cuda)
        if not ok:
            findings.append(
                Finding(
                    "fatbin",
                    ERROR,
                    e.member,
                    f"no kernel image for sm_{cc}: it carries {', '.join(facts[e.member])}"
                    + (f"; {how}" if how else ""),
                    f"rebuild with TORCH_CUDA_ARCH_LIST={target.cuda_arch} (the profile sets it; check the build "
                    "honoured it)",
                )
            )
    if must_have_cuda and not facts:
        findings.append(
            Finding(
                "fatbin",
                ERROR,
                wheel.path.name,
                "the recipe promises CUDA code, but no ELF in the wheel carries a fatbin",
                "build with the CUDA toolkit visible (CUDA_HOME, nvcc)",
            )
        )
    return findings, facts


def closure(
    wheel: Wheel, given: Iterable[Wheel], client: IndexClient | None, target: Target, cache: Path
) -> tuple[list[Wheel], list[Finding]]:
    """The dependency wheels pip would install with `wheel`: given ones first, the rest from the index.
    Only names the profile pins are fetched: those are the ones carrying shared libraries we link."""
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
        if name not in target.pins or client is None:
            continue
        filename = client.find_wheel(str(req), tags)
        if filename is None:
            findings.append(
                Finding(
                    "abi",
                    ERROR,
                    wheel.path.name,
                    f"dependency {req} has no wheel on {client.url} "
                    f"for cp{target.python.replace('.', '')} {target.platform}",
                    f"publish {name} first (inv build-wheel {name})",
                )
            )
            continue
        dep = open_wheel(client.download(filename, cache))
        have[name] = dep
        queue += dep.requires
    return list(have.values()), findings


def verify_wheel(
    wheel_path: Path | Wheel,
    target: Target,
    recipe: Recipe | None = None,
    given: Iterable[Wheel] = (),
    client: IndexClient | None = None,
    cache: Path | None = None,
) -> Report:
    """Run every check on one wheel (a path, or a wheel already read: reading torch takes seconds)."""
    wheel = wheel_path if isinstance(wheel_path, Wheel) else open_wheel(wheel_path)
    report = Report(wheel=wheel.path.name, checks=list(CHECKS))
    found, facts = check_fatbin(wheel, target, bool(recipe and recipe.cuda))
    report.findings += found
    if facts:
        report.facts["fatbin"] = facts
    report.findings += extensions.check(wheel, recipe.extensions if recipe else ())
    if wheel.machine and target.platform and not target.platform.endswith(wheel.machine):
        report.findings.append(
            Finding(
                "extensions", ERROR, wheel.path.name, f"wheel is for {wheel.machine}, the target is {target.platform}"
            )
        )
    deps, missing = closure(wheel, given, client, target, cache or Path("/tmp/jetwheel-cache"))
    report.findings += missing
    report.findings += abi.check(wheel, deps, target.system_libs, target.system_versions)
    report.findings += pins.check([wheel, *deps], target.pins, target.python, target.platform.split("_", 1)[1])
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


__all__ = ["ERROR", "Finding", "Report", "Target", "resolve_report", "verify_wheel"]
