"""The import contract (DESIGN.md, "Imports run one way"), stated per part (a folder of `jetwheel/`)
and checked on every module's imports, those inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "jetwheel"
# the bottom layer: modules directly in jetwheel/ (the target, pip helpers, errors, host facts, a run's settings, the
# index's wire contract); they import nothing above them
BOTTOM_MODULES = {"target", "pipcmd", "errors", "machine", "digest", "exhaustive", "wire", "settings"}
# each part and the parts it may import (besides itself and the bottom layer); what is not listed is refused
ALLOWED: dict[str, set[str]] = {
    "bottom": set(),
    "model": set(),
    "index.client": set(),
    "index.store": set(),
    "index.server": {"index.store"},
    "index.front": {"index.server", "index.store"},
    "runners": {"model"},
    "verify": {"model"},
    "sources": {"model", "index.client"},
    "doctor": {"verify", "runners"},  # the carried scan uses verify's readers; run.py finds an engine
    "build": {"model", "sources", "runners", "verify", "index.client"},
    "runtime": {"model", "sources", "verify", "build", "index.client"},
    "triton": {"model", "verify", "build", "runtime", "index.client"},
    "workflow": {
        "model",
        "sources",
        "runners",
        "verify",
        "doctor",
        "build",
        "runtime",
        "triton",
        "index.client",
        "index.store",
        "index.server",
        "index.front",
    },
    # the door: parse, call a workflow, print; it may name a value type or a renderer, never a server module
    "cli": {"workflow", "model", "build", "runners", "verify", "doctor"},
}


def part(module: str) -> str:
    """The part a module belongs to: `jetwheel.index.store.catalog` -> `index.store`."""
    parts = module.split(".")[1:]
    if not parts or parts == ["__main__"]:
        return "cli"  # the package itself and `python -m jetwheel` are the door's
    if parts[0] == "index" and len(parts) > 1:
        return f"index.{parts[1]}"
    if len(parts) == 1 and parts[0] in BOTTOM_MODULES:
        return "bottom"
    return parts[0]


def closure(module: str) -> set[str]:
    """Every jetwheel module `module` loads: what it imports, what those import, and so on."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        for dep in MODULES.get(todo.pop(), set()) - seen:
            seen.add(dep)
            todo.append(dep)
    return seen


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """Every jetwheel module `path` imports, resolved to its full name."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("jetwheel")}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("jetwheel"):
                continue
            for a in node.names:  # `from . import pages` names a module; `from .x import y` names x
                sub = f"{mod}.{a.name}"
                found.add(sub if (PKG.parent / (sub.replace(".", "/") + ".py")).exists() else mod)
    return found


MODULES = {module_name(p): imports(p) for p in sorted(PKG.rglob("*.py"))}


def test_every_module_belongs_to_a_known_part() -> None:
    unknown = {m for m in MODULES if part(m) not in ALLOWED and m != "jetwheel.index"}
    assert not unknown, f"put these in a part (a folder) and state what it may import: {sorted(unknown)}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "jetwheel.index"))
def test_each_part_imports_only_what_the_contract_allows(module: str) -> None:
    mine = part(module)
    allowed = ALLOWED[mine] | {mine, "bottom"}
    bad = {m for m in MODULES[module] if m != "jetwheel.index" and part(m) not in allowed}
    assert not bad, f"{module} ({mine}) imports {sorted(bad)}"


def test_the_runners_never_load_recipe_parsing() -> None:
    # a runner takes a BuildStep (model.step) and knows nothing of what a recipe means
    for module in (m for m in MODULES if part(m) == "runners"):
        bad = {m for m in closure(module) if m.startswith(("jetwheel.model.recipe", "jetwheel.model.profile"))}
        assert not bad, f"{module} loads {sorted(bad)}"


def test_the_client_side_never_reaches_the_build_side_nor_the_server() -> None:
    # through any chain of imports: a client that publishes loads the wire, never the server's pages or store
    for module in (m for m in MODULES if part(m) == "index.client"):
        bad = {m for m in closure(module) if part(m) not in {"bottom", "index.client"}}
        assert not bad, f"{module} loads {sorted(bad)}"


def test_the_wire_imports_nothing() -> None:
    assert not MODULES["jetwheel.wire"]


def test_the_store_reaches_into_no_room_built_on_it() -> None:
    # through any chain of imports: never the front, the server, the app or the pages
    for module in (m for m in MODULES if part(m) == "index.store"):
        bad = {m for m in closure(module) if part(m) not in {"bottom", "index.store"}}
        assert not bad, f"{module} loads {sorted(bad)}: offer a hook (Store.on_change) instead"


def test_the_part_contract_is_one_way() -> None:
    # the parts themselves form no loop
    loop = cycle({p: set(ALLOWED[p]) for p in ALLOWED})
    assert not loop, "the contract has a loop: " + " -> ".join(loop)


def cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import loop of `graph` (a path that comes back to where it started), or [] when there is none."""
    done: set[str] = set()

    def walk(node: str, path: list[str]) -> list[str]:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return []
        for nxt in sorted(graph.get(node, ())):
            if found := walk(nxt, [*path, node]):
                return found
        done.add(node)
        return []

    for start in sorted(graph):
        if found := walk(start, []):
            return found
    return []


def test_the_cycle_finder_finds_a_loop() -> None:
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_no_import_loop_inside_the_index() -> None:
    index = {
        m: {d for d in deps if d.startswith("jetwheel.index.") and d != m}
        for m, deps in MODULES.items()
        if m.startswith("jetwheel.index.")
    }
    loop = cycle(index)
    assert not loop, "import loop: " + " -> ".join(loop)


def test_no_import_loop_between_parts() -> None:
    parts: dict[str, set[str]] = {}
    for m, deps in MODULES.items():
        parts.setdefault(part(m), set()).update(part(d) for d in deps if part(d) != part(m) and d != "jetwheel.index")
    loop = cycle(parts)
    assert not loop, "import loop between parts: " + " -> ".join(loop)


def test_the_walker_sees_imports_inside_functions() -> None:
    assert "jetwheel.index.server.server" in MODULES["jetwheel.workflow.serve"]  # imported in serve_index's body
    assert "jetwheel.wire" in MODULES["jetwheel.index.server.app"]  # `from . import wire`


def test_closure_follows_chains_of_imports() -> None:
    assert {
        "jetwheel.index.store.store",
        "jetwheel.index.store.catalog",
        "jetwheel.index.store.durable",
    } <= closure("jetwheel.index.server.uploads")
    assert "jetwheel.index.store.durable" in closure("jetwheel.index.front.static")  # through the catalog


# What only reads the store takes its read interface (Catalog); only writers import the Store
READERS = {f"jetwheel.index.server.{m}" for m in ("api", "pagecache", "pages", "people", "profiles", "reads")} | {
    "jetwheel.index.server.resolve",
    "jetwheel.index.server.web",
    "jetwheel.index.front.export",
    "jetwheel.index.front.static",
    "jetwheel.index.front.front",
}


def test_the_store_s_readers_import_the_catalog_not_the_store() -> None:
    assert set(MODULES) >= READERS
    assert not {m for m in READERS if "jetwheel.index.store.store" in MODULES[m]}


def test_verify_and_the_doctor_search_with_one_model_of_ld_so() -> None:
    # issue 26: one ld.so model (verify/ldso.py, carried in the doctor's zipapp), no second copy
    assert "jetwheel.verify.ldso" in MODULES["jetwheel.verify.loader"]
    assert "jetwheel.verify.ldso" in MODULES["jetwheel.doctor.scan"]
    models = {m for m in MODULES if m.rsplit(".", 1)[-1] == "ldso"}
    assert models == {"jetwheel.verify.ldso"}
    assert not {m for m in closure("jetwheel.verify.ldso") if part(m) not in {"bottom", "verify"}}
