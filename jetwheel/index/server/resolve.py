"""Would a profile install from this store? Resolved in-process (resolvelib, the resolver pip
uses) over the store's own wheels and their METADATA: no pip, no process, no network and no build
step, whatever the uploads say. Only wheels count, and only those whose tags and Requires-Python
the target accepts; yanked files only when pinned with ==, as pip does (PEP 592)."""

from __future__ import annotations

import email.parser
import email.policy
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import InvalidWheelFilename, NormalizedName, canonicalize_name, parse_wheel_filename
from packaging.version import Version
from resolvelib import BaseReporter, Resolver
from resolvelib.providers import AbstractProvider
from resolvelib.resolvers import ResolutionError, ResolutionImpossible, ResolutionTooDeep

from jetwheel.index.store.records import StoredFile
from jetwheel.index.store.store import Store
from jetwheel.target import Target

MAX_ROUNDS = 2000  # resolvelib's bound on backtracking: a guard against pathological metadata


@dataclass(frozen=True)
class Candidate:
    name: NormalizedName
    version: Version
    extras: frozenset[str]
    file: StoredFile


@dataclass(frozen=True)
class Resolution:
    installs: tuple[str, ...]  # name==version of every project installed, sorted
    missing: tuple[str, ...]  # the requirements nothing on the store satisfies


def _key(name: str, extras: Iterable[str]) -> str:
    extra = ",".join(sorted(extras))
    return f"{canonicalize_name(name)}[{extra}]" if extra else canonicalize_name(name)


class _Provider(AbstractProvider):  # type: ignore[type-arg]
    def __init__(self, store: Store, target: Target) -> None:
        self.store, self.target = store, target
        self.projects = store.projects()
        self.tags = {str(t) for t in target.tags()}
        self.python = Version(f"{target.python}.0")

    def identify(self, requirement_or_candidate: Requirement | Candidate) -> str:
        r = requirement_or_candidate
        return _key(r.name, r.extras)

    def get_preference(self, identifier: str, *args: Any, **kwargs: Any) -> int:
        return 0

    def find_matches(
        self, identifier: str, requirements: Mapping[str, Iterator[Requirement]], incompatibilities: Any
    ) -> list[Candidate]:
        reqs = list(requirements[identifier])
        bad = {c.version for c in incompatibilities[identifier]}
        name = canonicalize_name(reqs[0].name) if reqs else NormalizedName(identifier.split("[")[0])
        extras = frozenset(e for r in reqs for e in r.extras)
        pinned = any(s.operator in ("==", "===") for r in reqs for s in r.specifier)
        found: dict[Version, Candidate] = {}
        for f in self.projects.get(name, []):
            version = self._installable(f, pinned)
            if version is None or version in bad or version in found:
                continue
            if all(r.specifier.contains(version, prereleases=True) for r in reqs):
                found[version] = Candidate(name, version, extras, f)
        return [found[v] for v in sorted(found, reverse=True)]

    def _installable(self, f: StoredFile, pinned: bool) -> Version | None:
        """The file's version when the target would install it; None otherwise."""
        if f.yanked is not None and not pinned:
            return None
        try:
            _, version, _, tags = parse_wheel_filename(f.filename)
        except InvalidWheelFilename:  # an sdist: never built here
            return None
        if not {str(t) for t in tags} & self.tags:
            return None
        try:
            if f.requires_python and not SpecifierSet(f.requires_python).contains(self.python, prereleases=True):
                return None
        except InvalidSpecifier:
            return None
        return version

    def is_satisfied_by(self, requirement: Requirement, candidate: Candidate) -> bool:
        return requirement.specifier.contains(candidate.version, prereleases=True)

    def get_dependencies(self, candidate: Candidate) -> list[Requirement]:
        deps = []
        if candidate.extras:  # an extra's candidate brings its base project at the same version
            deps.append(Requirement(f"{candidate.name}=={candidate.version}"))
        for req in self._requires(candidate.file):
            for extra in candidate.extras or {""}:
                env = dict(self.target.environment(), extra=extra)
                if req.marker is None or req.marker.evaluate(env):
                    req.marker = None
                    deps.append(req)
                    break
        return deps

    def _requires(self, f: StoredFile) -> list[Requirement]:
        try:
            raw = self.store.metadata_path(f.filename).read_bytes()
        except OSError:
            return []
        msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw)
        out = []
        for value in msg.get_all("Requires-Dist") or []:
            try:
                out.append(Requirement(str(value)))
            except InvalidRequirement:
                continue  # refused at upload; a file copied in by hand may still carry one
        return out


def resolve(store: Store, requirements: Sequence[str], target: Target) -> Resolution:
    """What installing `requirements` for `target` from the store alone would install."""
    provider = _Provider(store, target)
    try:
        result = Resolver(provider, BaseReporter()).resolve([Requirement(r) for r in requirements], MAX_ROUNDS)
    except ResolutionImpossible as e:
        return Resolution((), tuple(sorted({str(c.requirement) for c in e.causes})))
    except ResolutionTooDeep:
        return Resolution((), (f"{', '.join(requirements)} (no resolution within {MAX_ROUNDS} rounds)",))
    except ResolutionError as e:
        return Resolution((), (f"{', '.join(requirements)} ({e})",))
    installs = {f"{c.name}=={c.version}" for c in result.mapping.values()}
    return Resolution(tuple(sorted(installs)), ())
