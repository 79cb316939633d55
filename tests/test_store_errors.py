"""The store speaks in its own errors (issue 28): it and its validation raise kinds of refusal that
name no HTTP status and import nothing of aiohttp; the server maps each kind to its status once,
at the handler (index/server/guard.py STATUS). The attack tests (test_hostile.py) see the statuses."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from wheelmaker import make_wheel

from jetwheel import errors
from jetwheel.errors import (
    Abandoned,
    AlreadyExists,
    DiskFull,
    NotFound,
    RefusedByPolicy,
    StoreError,
    TooLarge,
    Unavailable,
    UploadRejected,
)
from jetwheel.index.server.guard import STATUS, refused
from jetwheel.index.store.store import Store

STORE = Path(__file__).resolve().parents[1] / "jetwheel" / "index" / "store"


def test_the_store_imports_nothing_of_aiohttp_and_names_no_http_status() -> None:
    for path in sorted(STORE.glob("*.py")):
        tree = ast.parse(path.read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not any(m.split(".")[0] == "aiohttp" for m in imported), path.name
        # what a refusal carries, and any function returning a refusal (durable.disk_full)
        raised = [r for r in ast.walk(tree) if isinstance(r, (ast.Raise, ast.Return))]
        statuses = [
            n.value
            for r in raised
            for n in ast.walk(r)
            if isinstance(n, ast.Constant) and type(n.value) is int and 400 <= n.value < 600
        ]
        assert statuses == [], f"{path.name} names HTTP statuses {statuses}"


def test_each_kind_of_refusal_has_its_status_at_the_handler() -> None:
    kinds: list[type[UploadRejected] | type[NotFound] | type[Unavailable]] = [UploadRejected, RefusedByPolicy]
    kinds += [NotFound, AlreadyExists, TooLarge, Abandoned, Unavailable, DiskFull]
    assert [refused(k("x")).status for k in kinds] == [400, 403, 404, 409, 413, 499, 503, 507]
    # a new kind of refusal in errors.py must be given its status here, not fall back to its parent's
    declared = {v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, StoreError)}
    refusals = {k for k in declared if issubclass(k, UploadRejected) or k in (NotFound, Unavailable)}
    assert refusals == set(STATUS), refusals ^ set(STATUS)


def test_the_store_refuses_in_its_own_terms(tmp_path: Path) -> None:
    store = Store(tmp_path / "packages", max_upload=1 << 20)
    (tmp_path / "w").mkdir()
    wheel = make_wheel(tmp_path / "w", "tiny", "1.0")
    store.add_file(wheel)
    with pytest.raises(AlreadyExists, match="already exists"):
        store.add_file(wheel)
    with pytest.raises(NotFound, match="no such file"):
        store.yank("absent-1.0-py3-none-any.whl")
    big = tmp_path / "big-1.0-py3-none-any.whl"
    big.write_bytes(b"x" * ((1 << 20) + 1))
    with pytest.raises(TooLarge, match="file too large"):
        store.add_file(big)
