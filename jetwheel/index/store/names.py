# ruff: noqa: RUF001, RUF002  (look-alike letters, on purpose)
"""Look-alike project names: a small confusable skeleton after Unicode TR39 (section 4), so that
`tоrch` (Cyrillic о) or `t0rch` cannot stand beside `torch` on the index.

The skeleton is NFKD, with combining marks dropped, each character that looks like a Latin letter
mapped to it, case folded and separators unified (PEP 503 treats `-`, `_` and `.` alike). The
table covers the Cyrillic and Greek letters that look like Latin ones and the digits and letters
people read as one another; it is a subset of TR39's confusables.txt, enough for project names.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from packaging.utils import canonicalize_name

_LATIN = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "һ": "h", "і": "i", "ї": "i", "ј": "j", "к": "k", "ԛ": "q",
    "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "ѕ": "s", "т": "t", "у": "y", "х": "x", "ԝ": "w",
    "ӏ": "l", "ь": "b", "г": "r", "п": "n", "д": "a", "ɡ": "g",
    "А": "a", "В": "b", "Е": "e", "Н": "h", "І": "i", "Ј": "j", "К": "k", "М": "m", "О": "o", "Р": "p",
    "С": "c", "Ѕ": "s", "Т": "t", "У": "y", "Х": "x", "Ԝ": "w", "Ӏ": "l",
    # Greek
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t",
    "υ": "u", "χ": "x", "γ": "y", "ω": "w",
    "Α": "a", "Β": "b", "Ε": "e", "Ζ": "z", "Η": "h", "Ι": "i", "Κ": "k", "Μ": "m", "Ν": "n", "Ο": "o",
    "Ρ": "p", "Τ": "t", "Υ": "y", "Χ": "x",
    # Latin and digits read as one another
    "ı": "i", "ȷ": "j", "ł": "l", "ø": "o", "0": "o", "1": "l",
}  # fmt: skip
_SEPARATORS = re.compile(r"[-_.]+")


def skeleton(name: str) -> str:
    """The name as it looks: two names with the same skeleton are confusable."""
    decomposed = unicodedata.normalize("NFKD", name)
    letters = "".join(c for c in decomposed if not unicodedata.combining(c))
    mapped = "".join(_LATIN.get(c, c) for c in letters).casefold()
    mapped = "".join(_LATIN.get(c, c) for c in mapped)  # case folding can make a mapped letter
    return _SEPARATORS.sub("-", mapped.replace("rn", "m").replace("vv", "w"))


def confusable_with(name: str, known: Iterable[str]) -> str | None:
    """A known project, other than `name` itself, whose skeleton is the new name's; None if none."""
    canonical, shape = canonicalize_name(name), skeleton(name)
    for other in known:
        if canonicalize_name(other) != canonical and skeleton(other) == shape:
            return other
    return None
