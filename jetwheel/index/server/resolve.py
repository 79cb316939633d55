"""Would a profile install from this store? Resolved in-process (resolvelib, the resolver pip
uses) over the store's own wheels and their METADATA: no pip, no process, no network and no build
step, whatever the uploads say. Only wheels count, and only those whose tags and Requires-Python
the target accepts; yanked files only when pinned with ==, as pip does (PEP 592)."""

from __future__ import annotations

import email.parser
import email.policy
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import InvalidWheelFilename, NormalizedName, canonicalize_name, parse_wheel_filename
from packaging.version import Version
from resolvelib import BaseReporter, Resolver
from resolvelib.providers import AbstractProvider
from resolvelib.resolvers import ResolutionError, ResolutionImpossible, ResolutionTooDeep

from jetwheel.index.store.catalog import Catalog
from jetwheel.index.store.records import StoredFile
from jetwheel.target import Target

MAX_ROUNDS = 2000  # resolvelib's bound on backtracking: a guard against pathological metadata
# A round can itself be long (thousands of markers, thousands of extras): the whole resolution has
# a time budget too, checked in every call resolvelib makes
BUDGET = 20.0
_LITERAL = re.compile(r"""(?:"([^"]*)"|'([^']*)')""")
_OTHER = "\0other"  # stands for every extra a marker does not name: they all compare alike


class _Stopped(Exception):
    """The resolution ran past its budget, or the server is stopping."""


class _Broken(Exception):
    """A file's metadata cannot be evaluated for the target (a marker that parses but compares
    what cannot be compared): that file is left out, and named."""


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
    broken: tuple[str, ...] = ()  # files left out: their metadata cannot be evaluated (why, per file)


def _key(name: str, extras: Iterable[str]) -> str:
    extra = ",".join(sorted(extras))
    return f"{canonicalize_name(name)}[{extra}]" if extra else canonicalize_name(name)


class _Provider(AbstractProvider):  # type: ignore[type-arg]
    def __init__(self, store: Catalog, target: Target, deadline: float, stop: Callable[[], bool]) -> None:
        self.store, self.target = store, target
        self.projects = store.projects()
        self.tags = {str(t) for t in target.tags()}
        self.python = Version(f"{target.python}.0")
        self.environment = dict(target.environment())
        self.deadline, self.stop = deadline, stop
        self.marks: dict[tuple[str, str], bool] = {}  # (marker, extra or _OTHER) -> holds
        self.requires: dict[str, list[Requirement]] = {}  # filename -> its Requires-Dist
        self.deps: dict[tuple[str, frozenset[str]], list[Requirement]] = {}
        self.broken: dict[str, str] = {}  # filename -> why it is left out

    def _check_time(self) -> None:
        if time.monotonic() > self.deadline or self.stop():
            raise _Stopped()

    def identify(self, requirement_or_candidate: Requirement | Candidate) -> str:
        self._check_time()
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
            self._check_time()
            version = self._installable(f, pinned)
            if version is None or version in bad or version in found:
                continue
            if all(r.specifier.contains(version, prereleases=True) for r in reqs):
                try:
                    self._dependencies(f, extras)
                except _Broken as e:
                    self.broken[f.filename] = str(e)
                    continue
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
        self._check_time()
        deps = []
        if candidate.extras:  # an extra's candidate brings its base project at the same version
            deps.append(Requirement(f"{candidate.name}=={candidate.version}"))
        return deps + self._dependencies(candidate.file, candidate.extras)

    def _dependencies(self, f: StoredFile, extras: frozenset[str]) -> list[Requirement]:
        """The file's requirements that hold for the target with `extras` (computed once)."""
        key = (f.filename, extras)
        if key not in self.deps:
            out = []
            for req in self._requires(f):
                if req.marker is None or self._holds(req.marker, extras, f.filename):
                    plain = Requirement(str(req))
                    plain.marker = None
                    out.append(plain)
            self.deps[key] = out
        return self.deps[key]

    def _holds(self, marker: Marker, extras: frozenset[str], filename: str) -> bool:
        """Does the marker hold for the target with one of `extras` (none: "")? Evaluated once per
        marker and extra it names, and once for all the extras it does not name."""
        text = str(marker)
        named = {canonicalize_name(a or b) for a, b in _LITERAL.findall(text)} if "extra" in text else set()
        wanted: dict[str, str] = {canonicalize_name(e): e for e in extras} or {"": ""}
        others = [e for k, e in wanted.items() if k not in named]
        tries = [(k, e) for k, e in wanted.items() if k in named] + ([(_OTHER, others[0])] if others else [])
        for key, extra in tries:
            if (text, key) not in self.marks:
                self._check_time()
                try:
                    self.marks[(text, key)] = marker.evaluate(dict(self.environment, extra=extra))
                except ValueError as e:
                    raise _Broken(f"{filename}: Requires-Dist marker {text[:200]!r} cannot be evaluated: {e}") from None
            if self.marks[(text, key)]:
                return True
        return False

    def _requires(self, f: StoredFile) -> list[Requirement]:
        if f.filename in self.requires:
            return self.requires[f.filename]
        try:
            raw = self.store.metadata_path(f.filename).read_bytes()
        except OSError:
            raw = b""
        msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw)
        out = []
        for value in msg.get_all("Requires-Dist") or []:
            try:
                out.append(Requirement(str(value)))
            except InvalidRequirement:
                continue  # refused at upload; a file copied in by hand may still carry one
        self.requires[f.filename] = out
        return out


def resolve(
    store: Catalog,
    requirements: Sequence[str],
    target: Target,
    budget: float = BUDGET,
    stop: Callable[[], bool] = lambda: False,
) -> Resolution:
    """What installing `requirements` for `target` from the store alone would install; within
    `budget` seconds, and no further once `stop()` is true."""
    provider = _Provider(store, target, time.monotonic() + budget, stop)
    wanted = ", ".join(requirements)
    try:
        result = Resolver(provider, BaseReporter()).resolve([Requirement(r) for r in requirements], MAX_ROUNDS)
    except ResolutionImpossible as e:
        missing = tuple(sorted({str(c.requirement) for c in e.causes}))
    except ResolutionTooDeep:
        missing = (f"{wanted} (no resolution within {MAX_ROUNDS} rounds)",)
    except _Stopped:
        missing = (f"{wanted} (no resolution within {budget:.0f} s)" if not stop() else f"{wanted} (stopped)",)
    except ResolutionError as e:
        missing = (f"{wanted} ({e})",)
    else:
        installs = {f"{c.name}=={c.version}" for c in result.mapping.values()}
        return Resolution(tuple(sorted(installs)), (), tuple(provider.broken.values()))
    return Resolution((), missing, tuple(provider.broken.values()))
