"""The house in figures (issue 28's evidence), for the jetwheel tree it is run in, or the one named:
modules per package, arrows between packages, the longest parameter lists, the count of `Any` and
of `dict[str, Any]`, and every read of the environment outside the run's context module.

    python3 bench/house.py [TREE]      # TREE: a checkout (default: the one this file is in)

Read from the source alone (ast), nothing imported: it runs on any commit's tree, before the folders
were made as well as after."""

from __future__ import annotations

import ast
import sys
from collections import Counter
from pathlib import Path

CONTEXT = "workflow/context.py"  # where a run's settings are read, the one place allowed to
LONGEST = 12  # parameter lists shown


def package(rel: Path) -> str:
    """`index/store/catalog.py` -> `index/store`; a module directly in jetwheel/ -> `.`."""
    return str(rel.parent) if rel.name != "__init__.py" or rel.parent != Path() else "."


def module_files(pkg: Path) -> dict[str, Path]:
    """Dotted module name -> its file, relative to jetwheel/."""
    out = {}
    for path in sorted(pkg.rglob("*.py")):
        rel = path.relative_to(pkg)
        parts = ("jetwheel", *rel.with_suffix("").parts)
        out[".".join(parts[:-1] if rel.name == "__init__.py" else parts)] = rel
    return out


def imported(tree: ast.Module, name: str, is_init: bool, files: dict[str, Path]) -> set[Path]:
    """The jetwheel files a module imports (top level and inside functions)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = name.split(".")[: len(name.split(".")) - node.level + (1 if is_init else 0)]
                base = ".".join([*up, *([base] if base else [])])
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return {files[m] for m in found if m in files}


def params(fn: ast.FunctionDef | ast.AsyncFunctionDef, method: bool) -> int:
    a = fn.args
    n = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) + bool(a.vararg) + bool(a.kwarg)
    return n - 1 if method and (a.posonlyargs or a.args) else n


def reasoned(fn: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> bool:
    """A reason for a long parameter list: `# params: why` at the def, or an Invoke task (one per flag)."""
    task = any(isinstance(d, ast.Call) and getattr(d.func, "id", "") == "task" for d in fn.decorator_list)
    return task or any("# params: " in line for line in lines[fn.lineno - 2 : fn.body[0].lineno - 1])


def functions(tree: ast.Module, lines: list[str]) -> list[tuple[str, int, int, bool]]:
    """(qualified name, parameter count, line, has a reason) of every function, methods without self/cls."""
    out = []

    def walk(node: ast.AST, prefix: str, in_class: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                method = in_class and not any(
                    isinstance(d, ast.Name) and d.id == "staticmethod" for d in child.decorator_list
                )
                out.append((prefix + child.name, params(child, method), child.lineno, reasoned(child, lines)))
                walk(child, f"{prefix}{child.name}.", False)
            elif isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}{child.name}.", True)

    walk(tree, "", False)
    return out


def is_any(node: ast.AST) -> bool:
    return (isinstance(node, ast.Name) and node.id == "Any") or (isinstance(node, ast.Attribute) and node.attr == "Any")


def anys(tree: ast.Module) -> tuple[int, int]:
    """(uses of Any, uses of dict[str, Any]) outside import lines."""
    n_any = sum(1 for node in ast.walk(tree) if is_any(node))
    n_dict = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in ("dict", "Dict"):
            s = node.slice
            if isinstance(s, ast.Tuple) and len(s.elts) == 2 and isinstance(s.elts[0], ast.Name):
                n_dict += s.elts[0].id == "str" and is_any(s.elts[1])
    return n_any, n_dict


def env_reads(tree: ast.Module) -> list[int]:
    """Lines that read the process environment: os.environ, os.getenv, or one imported from os."""
    names = ("environ", "environb", "getenv", "getenvb")
    imported = {
        a.asname or a.name
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and n.module == "os"
        for a in n.names
        if a.name in names
    }
    lines = set()
    for node in ast.walk(tree):
        value = node.value if isinstance(node, ast.Attribute) else None
        if isinstance(node, ast.Attribute) and node.attr in names and isinstance(value, ast.Name) and value.id == "os":
            lines.add(node.lineno)
        if isinstance(node, ast.Name) and node.id in imported:
            lines.add(node.lineno)
    return sorted(lines)


def report(root: Path) -> list[str]:
    pkg = root / "jetwheel"
    files = module_files(pkg)
    per_package: Counter[str] = Counter()
    arrows: Counter[tuple[str, str]] = Counter()
    fns: list[tuple[int, str, bool]] = []
    n_any = n_dict = 0
    env: list[str] = []
    for name, rel in files.items():
        text = (pkg / rel).read_text()
        tree = ast.parse(text, str(rel))
        here = package(rel)
        per_package[here] += 1
        for dep in imported(tree, name, rel.name == "__init__.py", files):
            if package(dep) != here:
                arrows[here, package(dep)] += 1
        fns += [(n, f"{rel}:{line} {q}", why) for q, n, line, why in functions(tree, text.splitlines())]
        a, d = anys(tree)
        n_any, n_dict = n_any + a, n_dict + d
        if str(rel) != CONTEXT:
            env += [f"{rel}:{line}" for line in env_reads(tree)]
    out = [f"modules: {len(files)} in {len(per_package)} packages"]
    out += [f"  {p:16} {n}" for p, n in sorted(per_package.items())]
    out.append(f"arrows between packages: {len(arrows)} (modules importing across them: {sum(arrows.values())})")
    out += [f"  {a} -> {b}  ({n})" for (a, b), n in sorted(arrows.items())]
    over = [(n, why) for n, _, why in fns if n > 6]
    out.append(
        f"longest parameter lists (of {len(fns)} functions; {len(over)} take more than 6, "
        f"{sum(not why for _, why in over)} of them without a reason: `# params:` or an Invoke task's flags):"
    )
    longest = sorted(fns, key=lambda x: (-x[0], x[1]))[:LONGEST]
    out += [f"  {n:2}  {where}{'' if why else '  (no reason given)'}" for n, where, why in longest]
    out.append(f"Any: {n_any}   dict[str, Any]: {n_dict}")
    out.append(f"environment reads outside {CONTEXT}: {len(env)}")
    out += [f"  {x}" for x in env]
    return out


if __name__ == "__main__":
    print("\n".join(report(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1])))
