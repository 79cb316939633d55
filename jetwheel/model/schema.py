"""What the recipe and profile schemas share: where their files are read from, and a reader of one
TOML table that turns every mistake into one RecipeError line naming the file, the key and the fix."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from jetwheel.errors import RecipeError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

_HERE = Path(__file__).resolve().parents[1]  # the jetwheel package: its bundled recipes lie there
# The recipes that ship with jetwheel: package data (jetwheel/recipes/) in an installed wheel, the
# top-level recipes/ of a source checkout (which pyproject.toml maps into the wheel)
DEFAULT_RECIPES = next(
    (d for d in (_HERE / "recipes", _HERE.parent / "recipes") if (d / "profiles").is_dir()), _HERE / "recipes"
)


def _is_recipes(path: Path) -> bool:
    return (path / "profiles").is_dir() or any(path.glob("*.toml"))


def recipes_root(explicit: str | Path = "") -> Path:
    """Where recipes and profiles are read from, the first that is given or present: `explicit`
    (--recipes DIR, else $JETWHEEL_RECIPES: the workflow's context gives either), ./recipes, then
    the bundled ones."""
    if explicit:
        return Path(explicit)
    here = Path("recipes")
    return here.resolve() if _is_recipes(here) else DEFAULT_RECIPES


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return dict(tomllib.load(f))
    except FileNotFoundError:
        raise RecipeError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"{path}: malformed TOML ({e}); fix the syntax") from None


class Table:
    """Reads one TOML table, remembering which keys were used so unknown keys can be named."""

    def __init__(self, path: Path, name: str, data: Any) -> None:
        if not isinstance(data, dict):
            raise RecipeError(f"{path}: [{name}] must be a table")
        self.path, self.name, self.data = path, name, data
        self.used: set[str] = set()

    def where(self, key: str) -> str:
        """`file: table.key`, how every error of this table starts."""
        return f"{self.path}: {self.name}.{key}" if self.name else f"{self.path}: {key}"

    def get(self, key: str, kind: type, default: Any = None, required: bool = False) -> Any:
        self.used.add(key)
        if key not in self.data:
            if required:
                raise RecipeError(f"{self.where(key)} is missing; add it ({kind.__name__})")
            return default
        value = self.data[key]
        if kind is float and isinstance(value, int):
            value = float(value)
        if not isinstance(value, kind):
            raise RecipeError(f"{self.where(key)} must be a {kind.__name__}, not {type(value).__name__}")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.get(key, list, [])
        if not all(isinstance(v, str) for v in value):
            raise RecipeError(f"{self.where(key)} must be a list of strings")
        return tuple(value)

    def mapping(self, key: str) -> dict[str, str]:
        value = self.get(key, dict, {})
        if not all(isinstance(v, str) for v in value.values()):
            raise RecipeError(f'{self.where(key)} values must be strings (quote numbers: "1")')
        return dict(value)

    def table(self, key: str) -> Table:
        self.used.add(key)
        return Table(self.path, f"{self.name}.{key}" if self.name else key, self.data.get(key, {}))

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            known = ", ".join(sorted(self.used))
            raise RecipeError(f"{self.where(unknown[0])}: unknown key; known keys here: {known}")
