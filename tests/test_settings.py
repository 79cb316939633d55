"""Settings are read once (DESIGN.md, "Settings are read once"): the environment is read by the
workflow's context alone, into a frozen value passed down; and no function takes more than six
parameters without the reason beside it."""

from __future__ import annotations

import ast
import dataclasses
import os
from collections.abc import Collection
from pathlib import Path

import pytest

from jetwheel.model.schema import DEFAULT_RECIPES
from jetwheel.runners.ccache import CompilerCache
from jetwheel.settings import Settings
from jetwheel.workflow.context import Context, context

PKG = Path(__file__).resolve().parents[1] / "jetwheel"
ABOVE = ("workflow", "cli", "__main__.py")  # the workflow resolves the settings; the door calls it
ENV_NAMES = {"environ", "environb", "getenv", "getenvb"}
# the one read below the workflow: the doctor's scan runs inside the examined interpreter (often a
# foreign one, from the zipapp), and that process's environment is what it examines, not a setting
EXEMPT = {("doctor/scan.py", "Doctor.__init__")}
MAX_PARAMS = 6


def modules() -> list[tuple[str, ast.Module, list[str]]]:
    out = []
    for path in sorted(PKG.rglob("*.py")):
        text = path.read_text()
        out.append((str(path.relative_to(PKG)), ast.parse(text), text.splitlines()))
    return out


def scopes(tree: ast.Module) -> list[tuple[str, ast.AST]]:
    """(qualified name, node) of every function, and ("", node) of the module's top level."""
    found: list[tuple[str, ast.AST]] = [("", tree)]

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = prefix + child.name
                if not isinstance(child, ast.ClassDef):
                    found.append((name, child))
                walk(child, name + ".")

    walk(tree, "")
    return found


def from_os(tree: ast.Module) -> set[str]:
    """The names a module imports from os that read the environment (`from os import environ`)."""
    return {
        a.asname or a.name
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and n.module == "os"
        for a in n.names
        if a.name in ENV_NAMES
    }


def env_reads(node: ast.AST, imported: Collection[str] = ()) -> list[int]:
    """Lines in `node` (not in functions nested in it) that read the environment: os.environ,
    os.getenv, or one of them imported by name (`imported`)."""
    lines = []
    todo = list(ast.iter_child_nodes(node))
    while todo:
        n = todo.pop()
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if (
            isinstance(n, ast.Attribute)
            and n.attr in ENV_NAMES
            and isinstance(n.value, ast.Name)
            and n.value.id == "os"
        ) or (isinstance(n, ast.Name) and n.id in imported):
            lines.append(n.lineno)
        todo.extend(ast.iter_child_nodes(n))
    return lines


def home_at_import(tree: ast.Module) -> list[int]:
    """Path.home() / expanduser() called at import time (a module constant): the home is a setting."""
    lines = []
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for n in ast.walk(stmt):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in ("home", "expanduser"):
                lines.append(n.lineno)
    return lines


def test_nothing_below_the_workflow_reads_the_environment() -> None:
    found, exempt_seen = [], set()
    for rel, tree, _lines in modules():
        if rel.startswith(ABOVE):
            continue
        for name, node in scopes(tree):
            for line in env_reads(node, from_os(tree)):
                if (rel, name) in EXEMPT:
                    exempt_seen.add((rel, name))
                else:
                    found.append(f"{rel}:{line} {name or '<module>'}")
        found += [f"{rel}:{line} Path.home() at import" for line in home_at_import(tree)]
    assert found == [], "read the setting in workflow/context.py and pass it down:\n" + "\n".join(found)
    assert exempt_seen == EXEMPT  # the exemption names a read that is still there, nothing more


def test_the_check_finds_a_read_below_the_workflow() -> None:
    tree = ast.parse("import os\n\ndef f(s):\n    return os.environ.get('X'), os.getenv('Y'), s.environ\n")
    assert env_reads(scopes(tree)[1][1]) == [4, 4]  # a settings value's `environ` is no read
    tree = ast.parse("from os import environ as e\nX = e['X']\n")
    assert env_reads(tree, from_os(tree)) == [2]
    assert home_at_import(ast.parse("from pathlib import Path\nCACHE = Path.home() / 'x'\n")) == [2]


def parameters(fn: ast.FunctionDef | ast.AsyncFunctionDef, method: bool) -> int:
    a = fn.args
    n = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) + bool(a.vararg) + bool(a.kwarg)
    return n - 1 if method and (a.posonlyargs or a.args) else n


def is_task(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """An Invoke task of the door: its parameters are its command-line flags, one each (the reason)."""
    return any(
        (isinstance(d, ast.Call) and isinstance(d.func, ast.Name) and d.func.id == "task")
        or (isinstance(d, ast.Name) and d.id == "task")
        for d in fn.decorator_list
    )


def long_signatures(tree: ast.Module, lines: list[str]) -> list[tuple[str, int, int]]:
    """(name, line, parameters) of each function over MAX_PARAMS with no `# params: why` on its
    `def` line, in its signature, or on the line above; an Invoke task's flags are its reason."""
    out = []
    for node in ast.walk(tree):
        body = node.body if isinstance(node, (ast.ClassDef, ast.Module, ast.FunctionDef, ast.AsyncFunctionDef)) else []
        for fn in body:
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in fn.decorator_list)
            n = parameters(fn, isinstance(node, ast.ClassDef) and not static)
            signature = lines[fn.lineno - 2 : fn.body[0].lineno - 1]
            if n > MAX_PARAMS and not is_task(fn) and not any("# params: " in line for line in signature):
                out.append((fn.name, fn.lineno, n))
    return out


def test_no_function_takes_more_than_six_parameters_without_a_reason() -> None:
    found = [
        f"{rel}:{line} {name} ({n})" for rel, tree, lines in modules() for name, line, n in long_signatures(tree, lines)
    ]
    assert found == [], "group them into a value, or write `# params: why` beside the def:\n" + "\n".join(found)


def test_the_parameter_check_wants_the_reason() -> None:
    src = "def f(a, b, c, d, e, f, g):\n    pass\n\n\ndef g(a, b, c, d, e, f, g):  # params: one per flag\n    pass\n"
    src += "\n\nclass C:\n    def m(self, a, b, c, d, e, f):\n        pass\n"
    src += "\n\n@task(help={})\ndef flags(c, a, b, d, e, f, g, h):\n    pass\n"
    assert long_signatures(ast.parse(src), src.splitlines()) == [("f", 1, 7)]


def test_settings_are_what_the_environment_gives_and_defaults_under_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    bare = Settings.read({}, home)
    assert (bare.recipes, bare.sources, bare.engine, bare.ca_bundle, bare.index_user) == (None, None, "", "", "")
    assert (bare.facts, bare.ccache, bare.share) == (
        home / ".cache/jetwheel/facts",
        home / ".cache/jetwheel/ccache",
        home / ".local/share",
    )
    assert CompilerCache.of(bare) == CompilerCache(home / ".cache/jetwheel/ccache", "jetwheel-ccache", "20G", True)
    env = {
        "JETWHEEL_RECIPES": "/r",
        "JETWHEEL_SOURCES": "/s",
        "JETWHEEL_FACTS": "/f",
        "JETWHEEL_CCACHE_DIR": "/c",
        "JETWHEEL_CCACHE_SIZE": "3G",
        "JETWHEEL_CCACHE": "off",
        "JETWHEEL_ENGINE": "docker",
        "JETWHEEL_CA_BUNDLE": "/ca.pem",
        "JETWHEEL_INDEX_USER": "ci",
        "JETWHEEL_INDEX_PASSWORD": "s3cret",
        "XDG_DATA_HOME": "/x",
        "PATH": "/bin",
    }
    s = Settings.read(env, home)
    assert (s.recipes, s.sources, s.facts, s.ccache, s.share) == tuple(map(Path, ("/r", "/s", "/f", "/c", "/x")))
    assert (s.ccache_size, s.ccache_enabled, s.engine, s.ca_bundle) == ("3G", False, "docker", "/ca.pem")
    assert (s.index_user, s.index_password, s.environ["PATH"]) == ("ci", "s3cret", "/bin")
    assert "s3cret" not in repr(s) and "/bin" not in repr(s)  # a logged context shows no secret
    env["PATH"] = "/changed"  # the value is a copy, taken once
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.engine = "podman"  # type: ignore[misc]
    assert s.environ["PATH"] == "/bin"


def test_a_run_resolves_its_recipes_profile_and_client_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JETWHEEL_RECIPES", raising=False)
    ctx = context(profile="mini", index="http://127.0.0.1:9")
    assert ctx.root == DEFAULT_RECIPES
    assert ctx.profile is ctx.profile and ctx.recipes is ctx.recipes and ctx.client is ctx.client
    assert ctx.client.url == "http://127.0.0.1:9" and ctx.profile.name == "mini"
    # the order recipes are found in: --recipes, then $JETWHEEL_RECIPES, then ./recipes, then the bundled
    (tmp_path / "recipes" / "profiles").mkdir(parents=True)
    assert context().root == tmp_path / "recipes"
    monkeypatch.setenv("JETWHEEL_RECIPES", str(tmp_path / "env"))
    assert context().root == tmp_path / "env"
    assert context(recipes=str(tmp_path / "given")).root == tmp_path / "given"
    # what a context holds was read when it was made: a later change of the environment is not seen
    held = Context(Settings.read(os.environ, tmp_path))
    monkeypatch.setenv("JETWHEEL_RECIPES", str(tmp_path / "later"))
    assert held.root == tmp_path / "env"
