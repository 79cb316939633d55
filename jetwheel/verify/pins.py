"""The Requires-Dist of each wheel agrees with the versions of the others in the set and with the
profile, markers evaluated for the target (CPython 3.12, Linux, aarch64).

Catches the torchvision-vs-torch mismatch that surfaces as `operator torchvision::nms does not exist`."""

from __future__ import annotations

from collections.abc import Mapping

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from jetwheel.target import marker_environment
from jetwheel.verify.report import ERROR, Finding
from jetwheel.verify.wheel import Wheel


def check(wheels: list[Wheel], pins: Mapping[str, str], python: str, machine: str) -> list[Finding]:
    env = marker_environment(python, machine)
    versions = {w.name: w.version for w in wheels}
    findings: list[Finding] = []
    for w in wheels:
        if w.name in pins and Version(pins[w.name]) != Version(w.version.public):
            findings.append(
                Finding(
                    "pins",
                    ERROR,
                    w.filename,
                    f"{w.name} {w.version} is not the profile's pin {pins[w.name]}",
                    "build the version the profile pins, or change the pin",
                )
            )
        for raw in w.requires:
            try:
                req = Requirement(raw)
            except InvalidRequirement:
                findings.append(Finding("pins", ERROR, w.filename, f"unparsable Requires-Dist {raw!r}"))
                continue
            if req.marker is not None and not req.marker.evaluate(dict(env, extra="")):
                continue
            name = canonicalize_name(req.name)
            have = versions.get(name)
            source = "in the set"
            if have is None and name in pins:
                have, source = Version(pins[name]), "pinned by the profile"
            if have is not None and not req.specifier.contains(have, prereleases=True):
                findings.append(
                    Finding(
                        "pins",
                        ERROR,
                        w.filename,
                        f"requires {req}, but {name} {have} is {source}",
                        f"rebuild {w.name} against {name} {have}, or pin {name} to a version matching {req.specifier}",
                    )
                )
    return findings
