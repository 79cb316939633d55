"""Look-alike project names, judged with Unicode's own table: TR39's confusables data as the
`confusable-homoglyphs` package ships it (confusables.json, generated from Unicode's confusables.txt;
the package's version is DATA_VERSION below), never a hand-made subset.

A name's skeleton is what it looks like: NFD with combining marks dropped, each character replaced
by the one its TR39 class is written with (a source whose prototype is several characters, `m` ->
`rn`, by those), compatibility forms folded, case folded, and PEP 503's separators unified. Two names with the same
skeleton are confusable, whichever of the two came first: the relation is symmetric, so one test
covers both directions (a new name like an old one, an old name like a new one).
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.resources
import json
import re
import unicodedata
from collections.abc import Iterable
from typing import Literal

from packaging.utils import canonicalize_name

DATA_PACKAGE = "confusable_homoglyphs"
DATA_VERSION = importlib.metadata.version("confusable-homoglyphs")
_SEPARATORS = re.compile(r"[-_.]+")
_BIDI = "\u200e\u200f"  # the package wraps right-to-left characters in direction marks


def _table() -> dict[str, list[dict[str, str]]]:
    raw = importlib.resources.files(DATA_PACKAGE).joinpath("confusables.json").read_text("utf-8")
    table: dict[str, list[dict[str, str]]] = json.loads(raw)
    return table


@functools.cache
def _prototypes() -> tuple[dict[str, str], dict[str, str]]:
    """(char -> its class's representative, char -> a several-character prototype), from the table.

    The table lists, for each source character, its prototype, and for each prototype its sources:
    the classes are the connected parts of that graph (union-find). A class is written with its
    ASCII letter or digit where it has one, so skeletons of plain names stay readable."""
    parent: dict[str, str] = {}

    def root(c: str) -> str:
        while parent.get(c, c) != c:
            parent[c] = parent.get(parent[c], parent[c])
            c = parent[c]
        return c

    def rank(c: str) -> tuple[bool, bool, bool, str]:
        return (not (c.isascii() and c.isalnum()), c.isdigit(), not c.islower(), c)

    expand: dict[str, str] = {}
    for key, entries in _table().items():
        source = key.strip(_BIDI)
        if len(source) != 1:
            continue  # a several-character prototype's own entry: its sources list it too
        for entry in entries:
            target = entry["c"].strip(_BIDI)
            if len(target) == 1:
                a, b = root(source), root(target)
                if a != b:
                    low, high = sorted((a, b), key=rank)
                    parent[high] = low
            elif len(entries) == 1 and target:
                expand[source] = target
    return {c: root(c) for c in parent}, expand


def _map(text: str) -> str:
    classes, expand = _prototypes()
    out = []
    for c in text:
        if c not in classes and c not in expand and len(c.upper()) == 1:
            # the table lists some scripts' capitals only (Cherokee): PEP 503 lowercases them
            c = c.upper()
        seq = expand.get(c, c)
        out.append("".join(classes.get(x, x) for x in seq))
    return "".join(out)


def _unmarked(text: str, form: Literal["NFD", "NFKD"]) -> str:
    return "".join(c for c in unicodedata.normalize(form, text) if not unicodedata.combining(c))


@functools.lru_cache(maxsize=65536)
def skeleton(name: str) -> str:
    """The name as it looks: two names with the same skeleton are confusable."""
    # TR39 maps after NFD; compatibility forms (fullwidth letters) are folded only after the
    # table has had its say, since NFKD first would turn lunate sigma into final sigma (an o)
    shape = _unmarked(_map(_unmarked(name, "NFD")), "NFKD")
    # mapped before case folding too: folding first turns some look-alikes into others
    shape = _map(shape.casefold()).casefold()
    return _SEPARATORS.sub("-", shape)


def confusable_with(name: str, known: Iterable[str]) -> str | None:
    """A known project, other than `name` itself, whose skeleton is the new name's; None if none."""
    canonical, shape = canonicalize_name(name), skeleton(name)
    for other in known:
        if canonicalize_name(other) != canonical and skeleton(other) == shape:
            return other
    return None
