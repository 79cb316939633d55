"""The house's size rule: no module of jetwheel over 400 lines and no function over 60, unless the
allowlist below says why. An entry that is no longer needed fails too, so the list stays true."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "jetwheel"
MAX_MODULE, MAX_FUNCTION = 400, 60

# module (relative to the repository) -> why it may be longer
LONG_MODULES: dict[str, str] = {}
# "module:function" -> why it may be longer
LONG_FUNCTIONS: dict[str, str] = {}


def sizes() -> tuple[dict[str, int], dict[str, int]]:
    modules: dict[str, int] = {}
    functions: dict[str, int] = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = str(path.relative_to(PKG.parent))
        text = path.read_text()
        modules[rel] = len(text.splitlines())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno is not None:
                key = f"{rel}:{node.name}"
                functions[key] = max(functions.get(key, 0), node.end_lineno - node.lineno + 1)
    return modules, functions


def test_no_module_over_400_lines_without_a_reason() -> None:
    modules, _ = sizes()
    long = {m for m, n in modules.items() if n > MAX_MODULE}
    assert not long - LONG_MODULES.keys(), f"over {MAX_MODULE} lines: {sorted(long - LONG_MODULES.keys())}"
    assert not LONG_MODULES.keys() - long, f"no longer long, drop from LONG_MODULES: {LONG_MODULES.keys() - long}"


def test_no_function_over_60_lines_without_a_reason() -> None:
    _, functions = sizes()
    long = {f for f, n in functions.items() if n > MAX_FUNCTION}
    assert not long - LONG_FUNCTIONS.keys(), f"over {MAX_FUNCTION} lines: {sorted(long - LONG_FUNCTIONS.keys())}"
    assert not LONG_FUNCTIONS.keys() - long, f"no longer long, drop from LONG_FUNCTIONS: {LONG_FUNCTIONS.keys() - long}"


def test_every_reason_is_written() -> None:
    assert all(len(why.split()) >= 8 for why in [*LONG_MODULES.values(), *LONG_FUNCTIONS.values()])
