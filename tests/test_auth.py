"""Who may do what on the index, in-process: roles, expiring read tokens, the throttle on failed
logins, and password checks that run off the event loop and take as long for unknown users."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from uploads import basic as basic_auth
from uploads import run_app
from wheelmaker import make_wheel

from jetwheel.cli import namespace
from jetwheel.index.server.app import INDEX, Settings, make_app
from jetwheel.index.server.auth import TOKEN_KEY, Token, Users, check_token, issue_token, token_key
from jetwheel.index.server.config import add_user, load_config
from jetwheel.index.store.store import Store

FN = "demo_pkg-1.0-py3-none-any.whl"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": basic_auth(user, password)}


@pytest.fixture
def users(tmp_path: Path) -> Path:
    htpasswd = tmp_path / "htpasswd"
    for user in ("admin", "uploader", "reader"):
        add_user(htpasswd, user, f"{user}-pw")
    return htpasswd


ROLES = {"admin": "admin", "reader": "read"}  # uploader: no entry, so the default role (upload)


async def upload(client: TestClient[Any, Any], wheel: Path, user: str) -> int:
    from aiohttp import FormData

    form = FormData()
    form.add_field(":action", "file_upload")
    form.add_field("content", wheel.read_bytes(), filename=wheel.name)
    r = await client.post("/", data=form, headers=basic(user, f"{user}-pw"))
    return r.status


def test_roles_upload_needs_upload_and_yank_delete_overwrite_need_admin(users: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "packages")
    wheel = make_wheel(tmp_path, "demo-pkg", "1.0")
    settings = Settings(htpasswd=users, roles=ROLES, allow_overwrite=True)

    async def body(c: TestClient[Any, Any]) -> None:
        assert await upload(c, wheel, "reader") == 403
        assert await upload(c, wheel, "uploader") == 200
        assert await upload(c, wheel, "uploader") == 409  # overwrite: admins only
        assert await upload(c, wheel, "admin") == 200
        for user, status in (("uploader", 403), ("reader", 403), ("admin", 200)):
            for method, path in (("POST", f"/api/files/{FN}/yank"), ("POST", f"/api/files/{FN}/unyank")):
                r = await c.request(method, path, json={}, headers=basic(user, f"{user}-pw"))
                assert r.status == status, (user, path, await r.text())
        assert (await c.delete(f"/api/files/{FN}", headers=basic("uploader", "uploader-pw"))).status == 403
        assert (await c.get("/simple/demo-pkg/")).status == 200
        assert (await c.delete(f"/api/files/{FN}", headers=basic("admin", "admin-pw"))).status == 200
        assert (await c.get("/simple/demo-pkg/")).status == 404

    run_app(store, settings, body)


def test_without_htpasswd_writes_are_refused_and_reads_are_open(tmp_path: Path) -> None:
    store = Store(tmp_path / "packages")
    wheel = make_wheel(tmp_path, "demo-pkg", "1.0")

    async def body(c: TestClient[Any, Any]) -> None:
        assert await upload(c, wheel, "anyone") == 403
        assert (await c.get("/simple/")).status == 200

    run_app(store, Settings(), body)


def test_read_tokens_expire_and_never_write(users: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "packages")
    store.add_file(make_wheel(tmp_path, "demo-pkg", "1.0"))
    key = token_key(store.state_path(TOKEN_KEY))
    stamp = Users(users, {}).stamp("reader")
    assert stamp is not None
    good = issue_token(key, int(time.time()) + 3600, "reader", stamp)
    expired = issue_token(key, int(time.time()) - 1, "reader", stamp)
    forged = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    assert check_token(key, good, time.time()) == Token("reader", "read", stamp)
    assert check_token(key, expired, time.time()) is None
    settings = Settings(htpasswd=users, roles=ROLES, auth_reads=True)

    async def body(c: TestClient[Any, Any]) -> None:
        assert (await c.get("/simple/")).status == 401
        assert (await c.get("/health")).status == 200  # public
        assert (await c.get("/simple/demo-pkg/", headers=basic("token", good))).status == 200
        assert (await c.get(f"/packages/{FN}", headers=basic("anyone", good))).status == 200
        for bad in (expired, forged, "jw3.admin.YQ.99999999999.x"):
            assert (await c.get("/simple/", headers=basic("token", bad))).status == 401
        form_headers = {**basic("token", good), "Content-Type": "multipart/form-data; boundary=x"}
        assert (await c.post("/", data=b"--x--\r\n", headers=form_headers)).status == 403
        assert (await c.get("/simple/", headers=basic("reader", "reader-pw"))).status == 200

    run_app(store, settings, body)


def test_failed_logins_are_throttled_per_address_with_retry_after_and_logged(
    users: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(tmp_path / "packages")
    settings = Settings(htpasswd=users, auth_reads=True)

    async def body(c: TestClient[Any, Any]) -> None:
        statuses = [(await c.get("/simple/", headers=basic("admin", f"guess{i}"))).status for i in range(12)]
        assert statuses[:10] == [401] * 10 and statuses[10:] == [429, 429]
        r = await c.get("/simple/", headers=basic("admin", "admin-pw"))  # even the right one waits
        assert r.status == 429 and 0 < int(r.headers["Retry-After"]) <= 60
        assert (await c.get("/health")).status == 200

    with caplog.at_level(logging.WARNING, logger="jetwheel.index"):
        run_app(store, settings, body)
    assert sum("failed login for 'admin' from 127.0.0.1" in m for m in caplog.messages) == 10


def test_password_checks_run_off_the_loop_and_unknown_users_wait_as_long_in_no_thread(
    users: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[tuple[str, str]] = []
    u = Users(users, {})
    assert u._ht is not None
    real = u._ht.context.verify

    def spy(secret: str, hash: str | bytes, **kw: Any) -> bool:
        text = hash if isinstance(hash, str) else hash.decode()
        checks.append((threading.current_thread().name, text[:4]))
        return bool(real(secret, hash, **kw))

    monkeypatch.setattr(u._ht.context, "verify", spy)
    store = Store(tmp_path / "packages")
    app = make_app(store, Settings(htpasswd=users, auth_reads=True))

    async def main() -> None:
        app[INDEX].guard.users = u
        async with TestClient(TestServer(app)) as c:
            start = time.monotonic()
            assert (await c.get("/simple/", headers=basic("nobody", "x"))).status == 401
            assert time.monotonic() - start >= u.unknown_cost * 0.9 > 0  # as long as a bcrypt takes
            assert (await c.get("/simple/", headers=basic("admin", "x"))).status == 401
            assert (await c.get("/simple/", headers=basic("admin", "admin-pw"))).status == 200
            assert (await c.get("/simple/", headers=basic("admin", "admin-pw"))).status == 200  # remembered

    asyncio.run(main())
    assert len(checks) == 2  # wrong password, right password; the unknown user none; then remembered
    assert all(name.startswith("jetwheel-auth") for name, _ in checks)
    assert all(prefix.startswith("$2") for _, prefix in checks)


def test_adduser_role_and_token_tasks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from invoke.program import Program

    config, htpasswd = tmp_path / "index" / "config.toml", tmp_path / "index" / "htpasswd"
    config.parent.mkdir()
    config.write_text('# kept\n[index]\nroot = "packages"\n')
    prog = Program(namespace=namespace, name="jetwheel", binary="jetwheel")
    base = ["jetwheel", "index.adduser", "--config", str(config), "--htpasswd", str(htpasswd)]
    prog.run([*base, "--user", "alice", "--password", "pw-alice", "--role", "admin"], exit=False)
    prog.run([*base, "--user", "bob", "--password", "pw-bob"], exit=False)
    prog.run([*base, "--user", "alice", "--password", "pw-alice2", "--role", "read"], exit=False)
    assert load_config(config).roles == {"alice": "read", "bob": "upload"}
    assert config.read_text().startswith("# kept\n")
    with pytest.raises(SystemExit):  # an unknown role is refused, and nothing is written
        prog.run([*base, "--user", "eve", "--password", "x", "--role", "root"])
    assert "eve" not in htpasswd.read_text() and "eve" not in config.read_text()
    token_task = ["jetwheel", "index.token", "--read", "--root", str(tmp_path / "p"), "--user", "bob"]
    token_task += ["--config", str(config)]
    prog.run([*token_task, "--expires", "2h"], exit=False)
    token = capsys.readouterr().out.strip().splitlines()[-1]
    key = token_key(Store(tmp_path / "p").state_path(TOKEN_KEY))
    found = check_token(key, token, time.time() + 7100)
    assert found is not None and (found.user, found.role) == ("bob", "read")
    assert check_token(key, token, time.time() + 7300) is None
