"""The import contract (README, "Imports run one way"), checked on every module's imports, those
inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "jetwheel"
BOTTOM = {
    "jetwheel.target",
    "jetwheel.pipcmd",
    "jetwheel.errors",
    "jetwheel.machine",
    "jetwheel.digest",
    "jetwheel.exhaustive",
}
# the index server: what runs per request; it knows nothing of recipes, plans, builds or verify
SERVER = {
    f"jetwheel.index.{m}"
    for m in (
        "admin",
        "api",
        "app",
        "auth",
        "catalog",
        "config",
        "durable",
        "export",
        "front",
        "guard",
        "names",
        "pages",
        "pagecache",
        "people",
        "profiles",
        "reads",
        "records",
        "resolve",
        "server",
        "static",
        "store",
        "upload_form",
        "uploads",
        "validate",
        "web",
    )
}
# the client side of the index (publish, look up, mirror): used by the build side, never by the server
CLIENT = {"jetwheel.index.client", "jetwheel.index.mirror"}
# what both sides agree on over HTTP (media types, paths, roles): imported by both, importing nothing
WIRE = "jetwheel.index.wire"
# the store and what it is made of; every other room of the index is built on it (the nginx front follows it
# through Store.on_change), so the store reaches into none of them
STORE_SIDE = {f"jetwheel.index.{m}" for m in ("store", "catalog", "durable", "records", "validate")}


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


def test_every_server_module_is_checked() -> None:
    present = {m for m in MODULES if m.startswith("jetwheel.index.")}
    assert present <= SERVER | CLIENT | {WIRE}, f"classify the new index modules: {sorted(present - SERVER - CLIENT)}"


@pytest.mark.parametrize("module", sorted(SERVER))
def test_the_index_server_imports_only_the_bottom_layer_and_itself(module: str) -> None:
    bad = {m for m in MODULES[module] if m not in BOTTOM | SERVER | {WIRE, "jetwheel.index"}}
    assert not bad, f"{module} imports {sorted(bad)}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("jetwheel.verify")))
def test_verify_imports_no_index_code(module: str) -> None:
    bad = {m for m in MODULES[module] if m.startswith("jetwheel.index")}
    assert not bad, f"{module} imports {sorted(bad)}"


@pytest.mark.parametrize("module", sorted(BOTTOM))
def test_the_bottom_layer_imports_nothing_above_it(module: str) -> None:
    bad = MODULES[module] - BOTTOM
    assert not bad, f"{module} imports {sorted(bad)}"


@pytest.mark.parametrize("module", sorted(CLIENT))
def test_the_client_side_never_reaches_the_build_side_nor_the_server(module: str) -> None:
    # through any chain of imports: a client that publishes loads the wire, never the server's pages or store
    bad = {m for m in closure(module) if m not in BOTTOM | CLIENT | {WIRE, "jetwheel.index"}}
    assert not bad, f"{module} loads {sorted(bad)}"


def test_the_wire_imports_nothing() -> None:
    assert not MODULES[WIRE]


@pytest.mark.parametrize("module", sorted(STORE_SIDE))
def test_the_store_reaches_into_no_room_built_on_it(module: str) -> None:
    # through any chain of imports: never the front, the server, the app or the pages
    bad = closure(module) - BOTTOM - STORE_SIDE
    assert not bad, f"{module} loads {sorted(bad)}: offer a hook (Store.on_change) instead"


def test_the_build_side_reaches_no_index_server_module_but_through_the_door() -> None:
    # the workflows start the server (index.serve) and work on a store (export, tokens); the door's
    # tasks reach them only through a workflow
    build = {m for m in MODULES if not m.startswith(("jetwheel.index.", "jetwheel.workflow"))}
    for module in build:
        bad = MODULES[module] & SERVER
        assert not bad, f"{module} imports {sorted(bad)}"


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


def test_the_walker_sees_imports_inside_functions() -> None:
    assert "jetwheel.index.server" in MODULES["jetwheel.workflow.serve"]  # imported in serve_index's body
    assert "jetwheel.index.wire" in MODULES["jetwheel.index.app"]  # `from . import wire`


def test_closure_follows_chains_of_imports() -> None:
    assert {"jetwheel.index.store", "jetwheel.index.catalog", "jetwheel.index.durable"} <= closure(
        "jetwheel.index.static"
    )
