# ruff: noqa: RUF001, RUF003  (look-alike letters, on purpose)
"""Issue 18, in-process: no upload may run code, claim a build, forge trust or squat a name. Each
refused upload leaves the store's bytes as they were."""

from __future__ import annotations

import gzip
import json
import multiprocessing
import os
import socket
import subprocess
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from passlib.apache import HtpasswdFile
from uploads import basic, multipart, run_app, upload_fields
from wheelmaker import make_wheel

from jetwheel.errors import JetwheelError, StoreError
from jetwheel.index.client.client import IndexClient
from jetwheel.index.front.front import nginx_conf
from jetwheel.index.server import profiles
from jetwheel.index.server.app import Settings
from jetwheel.index.server.auth import KEY_BYTES, TOKEN_KEY, BadKey, Users, issue_token, token_key
from jetwheel.index.server.config import add_user
from jetwheel.index.server.guard import FRONT_HEADER
from jetwheel.index.server.throttle import THROTTLE
from jetwheel.index.store.store import Store
from jetwheel.target import Target
from jetwheel.verify import FactCache, Published, published_facts
from jetwheel.verify.wheel import Wheel, from_bytes
from jetwheel.workflow.index import issue_token as issue_cli_token

ROLES = {"admin": "admin", "builder": "builder", "reader": "read"}  # up: the default role, upload
OWNED = frozenset({"torch", "pytorch-triton"})
CT = "multipart/form-data; boundary=xXx"


def auth(user: str) -> dict[str, str]:
    return {"Authorization": basic(user, f"{user}-pw")}


@pytest.fixture
def users(tmp_path: Path) -> Path:
    htpasswd = tmp_path / "htpasswd"
    for user in ("admin", "builder", "up", "reader"):
        add_user(htpasswd, user, f"{user}-pw")
    return htpasswd


def snapshot(root: Path) -> dict[str, bytes]:
    """Every byte the store holds, by path (its token key made first: the app makes it at start),
    but the failed-login throttle's table (login state, changed by every failed login)."""
    token_key(root / ".jetwheel" / TOKEN_KEY)
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.name != THROTTLE
    }


async def post(c: TestClient[Any, Any], user: str, filename: str, data: bytes, **fields: str) -> tuple[int, str]:
    f = {**upload_fields(data, filename.split("-")[0]), **fields}
    r = await c.post("/", data=multipart(f, filename, data), headers={**auth(user), "Content-Type": CT})
    return r.status, await r.text()


def settings(users: Path, **kw: Any) -> Settings:
    return Settings(htpasswd=users, roles=ROLES, owned=OWNED, **kw)


# -- 1. no code, no connection --------------------------------------------------------------------
def test_direct_url_requirements_are_refused_at_upload(users: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "p")
    evil = make_wheel(tmp_path, "demo-pkg", "1.0", requires=("evil @ http://127.0.0.1:9/evil-1.0.tar.gz",))
    before = snapshot(store.root)

    async def body(c: TestClient[Any, Any]) -> None:
        status, text = await post(c, "admin", evil.name, evil.read_bytes())
        assert status == 400 and "direct URL reference" in text and "as PyPI does" in text, text

    run_app(store, settings(users), body)
    assert snapshot(store.root) == before


def test_compatibility_is_resolved_in_process_without_pip_or_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path / "p")
    store.add_file(make_wheel(tmp_path, "top", "1.0", requires=("dep>=2", "other; python_version < '3'")))
    store.add_file(make_wheel(tmp_path, "dep", "1.0"))
    store.add_file(make_wheel(tmp_path, "dep", "2.1"))
    # METADATA that names a URL (an upload refuses it; a store written by an older index may hold it)
    bad = store.add_file(make_wheel(tmp_path, "bad", "1.0", requires=("evil>=1",)))
    meta = store.metadata_path(bad.filename)
    meta.write_bytes(meta.read_bytes().replace(b"evil>=1", b"evil @ http://127.0.0.1:9/evil-1.0.tar.gz"))

    def no(*a: object, **k: object) -> None:
        raise AssertionError("the compatibility check must not run a process or open a connection")

    monkeypatch.setattr(subprocess, "Popen", no)
    monkeypatch.setattr(socket.socket, "connect", no)
    target = Target("3.12", "linux_aarch64", "", "")
    ok = profiles.check(store, profiles.ProfileView("p", "top==1.0", {"top": "1.0"}, target))
    assert ok.passed and ok.detail == "top==1.0 resolves to dep==2.1, top==1.0", ok
    missing = profiles.check(store, profiles.ProfileView("q", "bad", {"bad": "1.0"}, target))
    assert not missing.passed and "evil" in missing.detail and "no cp312 linux_aarch64 wheel" in missing.detail


# -- 2. builder role: owned names, cache keys, facts others trust ---------------------------------
def test_only_builders_publish_owned_names_and_claim_cache_keys(users: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "p")
    torch = make_wheel(tmp_path, "torch", "2.7.0")
    demo = make_wheel(tmp_path, "demo-pkg", "1.0")
    claim = json.dumps({"cache_key": "k-torch"})

    async def body(c: TestClient[Any, Any]) -> None:
        before = snapshot(store.root)
        status, text = await post(c, "up", torch.name, torch.read_bytes())
        assert status == 403 and "only a builder or admin" in text, text
        assert snapshot(store.root) == before
        # an upload-role user may publish other names, and may even claim a key: it answers nothing
        assert (await post(c, "up", demo.name, demo.read_bytes(), jetwheel_provenance=claim))[0] == 200
        assert (await c.get("/api/cache/k-torch")).status == 404
        assert (await post(c, "builder", torch.name, torch.read_bytes(), jetwheel_provenance=claim))[0] == 200
        found = await (await c.get("/api/cache/k-torch")).json()
        assert found["filename"] == torch.name
        page = await (await c.get("/simple/torch/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})).json()
        assert page["files"][0]["_jetwheel-published-by"] == "builder"
        info = await (await c.get(f"/api/files/{demo.name}")).json()
        assert info["published_by"] == "upload"

    run_app(store, settings(users), body)


def test_the_client_prefers_a_builders_file_and_says_whether_it_is_trusted(monkeypatch: pytest.MonkeyPatch) -> None:
    from jetwheel.build.indexwheels import IndexWheels

    def f(name: str, by: str) -> dict[str, Any]:
        return {"filename": name, "_jetwheel-published-by": by, "yanked": False}

    real = "torch-2.6.0-cp312-cp312-linux_aarch64.whl"
    forged = "torch-2.6.0-9zzz-cp312-cp312-linux_aarch64.whl"  # a build tag: sorts after the real one
    client = IndexClient("http://index.invalid")
    doc = {"files": [f(real, "builder"), f(forged, "upload")]}
    monkeypatch.setattr(client, "project", lambda name: doc)
    monkeypatch.setattr(
        client, "file_info", lambda fn: {"sha256": "ab", "published_by": "upload" if fn == forged else "builder"}
    )
    tags = Target("3.12", "linux_aarch64", "", "").tags()
    assert client.find_wheel("torch>=2.6", tags) == real
    assert IndexWheels(client).find("torch>=2.6", tags) == Published(real, "ab", True)
    doc["files"] = [f(forged, "upload")]
    assert IndexWheels(client).find("torch>=2.6", tags) == Published(forged, "ab", False)


class _Source:
    """A WheelSource with forged facts for every file; counts what verify asks of it."""

    def __init__(self, facts: bytes, wheel: Path) -> None:
        self.data, self.wheel, self.asked = facts, wheel, 0

    url = "http://index.invalid"

    def find(self, requirement: str, tags: Any) -> None:
        return None

    def download(self, filename: str, dest: Path) -> Path:
        return self.wheel

    def facts(self, filename: str) -> bytes:
        self.asked += 1
        return self.data


def test_index_facts_count_only_for_a_builders_file_and_never_enter_the_local_cache(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "demo-pkg", "1.0")
    cache = FactCache(tmp_path / "facts")
    sha = cache.sha256(wheel)
    forged = Wheel(wheel.name, sha, ("forged-dep",), (), ())
    source = _Source(forged.to_bytes(), wheel)
    untrusted = published_facts(Published(wheel.name, sha, False), source, cache, tmp_path / "dl")
    assert source.asked == 0 and untrusted.requires == ()  # read from the file itself
    trusted = published_facts(Published(wheel.name, sha, True), source, FactCache(tmp_path / "f2"), tmp_path / "dl")
    assert source.asked == 1 and trusted.requires == ("forged-dep",)
    assert FactCache(tmp_path / "f2").get(sha) is None  # used once, not kept


def test_facts_parsing_is_bounded_in_depth_and_inflated_size() -> None:
    deep = gzip.compress(b'{"format": 2, "elves": ' + b"[" * 200_000 + b"]" * 200_000 + b"}")
    with pytest.raises(ValueError, match="unreadable facts"):
        from_bytes(deep)
    z = zlib.compressobj(1, zlib.DEFLATED, 31)
    bomb = b"".join(z.compress(bytes(1 << 20)) for _ in range(300)) + z.flush()  # 300 MiB of zeros
    assert len(bomb) < 2 << 20
    with pytest.raises(ValueError, match="inflates to more than 256 MiB"):
        from_bytes(bomb)


def test_roles_are_reread_when_the_config_changes(users: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "p")
    store.add_file(make_wheel(tmp_path, "demo-pkg", "1.0"))
    config = tmp_path / "config.toml"
    config.write_text('[index.roles]\nadmin = "admin"\n')
    fn = "demo_pkg-1.0-py3-none-any.whl"

    async def body(c: TestClient[Any, Any]) -> None:
        assert (await c.post(f"/api/files/{fn}/yank", json={}, headers=auth("admin"))).status == 200
        config.write_text('[index.roles]\nadmin = "upload"\n')
        later = time.time_ns() + 2 * 10**9
        os.utime(config, ns=(later, later))
        r = await c.post(f"/api/files/{fn}/unyank", json={}, headers=auth("admin"))
        assert r.status == 403 and "has the role upload" in await r.text()

    run_app(store, Settings(htpasswd=users, config=config), body)


# -- 3. tokens ------------------------------------------------------------------------------------
def test_a_short_token_key_is_refused(tmp_path: Path) -> None:
    key = Store(tmp_path / "p").state_path(TOKEN_KEY)
    key.write_bytes(b"")
    with pytest.raises(BadKey, match=f"0 bytes, fewer than {KEY_BYTES}: remove it"):
        token_key(key)


def _key_of(state: str, out: Any) -> None:
    out.put(token_key(Path(state) / TOKEN_KEY))


def test_concurrent_workers_agree_on_one_whole_key(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    for trial in range(10):
        state = Store(tmp_path / f"p{trial}").state
        out = ctx.Queue()
        procs = [ctx.Process(target=_key_of, args=(str(state), out)) for _ in range(4)]
        for p in procs:
            p.start()
        keys = {out.get(timeout=30) for _ in procs}
        for p in procs:
            p.join()
        assert len(keys) == 1 and len(keys.pop()) == KEY_BYTES
        assert [p.name for p in state.iterdir() if "token" in p.name] == ["token.key"]  # no temp left


def test_tokens_die_with_their_user_and_expire_within_the_maximum(users: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "p")
    stamp = Users(users, {}).stamp("reader")
    assert stamp is not None
    token = issue_token(token_key(store.state_path(TOKEN_KEY)), int(time.time()) + 3600, "reader", stamp)

    async def body(c: TestClient[Any, Any]) -> None:
        assert (await c.get("/simple/", headers={"Authorization": basic("x", token)})).status == 200
        ht = HtpasswdFile(str(users))
        ht.delete("reader")
        ht.save()
        assert (await c.get("/simple/", headers={"Authorization": basic("x", token)})).status == 401

    run_app(store, settings(users, auth_reads=True), body)
    with pytest.raises(JetwheelError, match="at most 366d"):
        issue_cli_token(str(store.root), "36500d", "reader")


def test_a_non_ascii_token_signature_is_a_failed_login(users: Path, tmp_path: Path) -> None:
    async def body(c: TestClient[Any, Any]) -> None:
        bad = {"Authorization": basic("x", "jw3.read.cmVhZGVy.99999999999.é")}
        statuses = [(await c.get("/simple/", headers=bad)).status for _ in range(11)]
        assert statuses == [401] * 10 + [429]

    run_app(Store(tmp_path / "p"), settings(users, auth_reads=True), body)


# -- 4-5. look-alike names, artifacts --------------------------------------------------------------
@pytest.mark.parametrize(
    ("filename", "artifact", "user", "status", "says"),
    [
        ("tоrch-2.7.0-py3-none-any.whl", False, "builder", 400, "looks like the project 'torch'"),  # Cyrillic о
        ("t0rch-2.7.0-py3-none-any.whl", False, "up", 400, "looks like the project 'torch'"),
        ("dеmo_pkg-1.0-py3-none-any.whl", False, "up", 400, "looks like the project 'demo-pkg'"),  # Cyrillic е
        ("pytorch_triton-3.3.0-cp312-cp312-linux_aarch64.whl", True, "builder", 400, "must be a .tar"),
        ("demo_pkg-2.0.tar.gz", True, "up", 400, "named like an sdist"),
        ("torch-2.7.0-src.tar.gz", True, "up", 403, "only a builder or admin"),
    ],
)
def test_look_alike_names_and_disguised_artifacts_are_refused(
    users: Path, tmp_path: Path, filename: str, artifact: bool, user: str, status: int, says: str
) -> None:
    store = Store(tmp_path / "p")
    store.add_file(make_wheel(tmp_path, "demo-pkg", "1.0"))
    name, version = filename.split("-")[:2]
    (tmp_path / "w").mkdir()
    data = make_wheel(tmp_path / "w", name, version).read_bytes() if filename.endswith(".whl") else b"x" * 100
    if artifact and filename.endswith(".whl"):
        data = b"PK\x05\x06" + bytes(18)  # an empty zip: no METADATA
    before = snapshot(store.root)

    async def body(c: TestClient[Any, Any]) -> None:
        fields = {"jetwheel_artifact": "1"} if artifact else {}
        got, text = await post(c, user, filename, data, **fields)
        assert (got, says in text) == (status, True), text

    run_app(store, settings(users), body)
    assert snapshot(store.root) == before


def test_artifacts_with_names_of_their_own_are_stored(users: Path, tmp_path: Path) -> None:
    async def body(c: TestClient[Any, Any]) -> None:
        assert (await post(c, "up", "my_data_24.04.tar", b"x" * 100, jetwheel_artifact="1"))[0] == 200
        assert (await post(c, "builder", "torch-2.7.0-src.tar.gz", b"x" * 100, jetwheel_artifact="1"))[0] == 200

    run_app(Store(tmp_path / "p"), settings(users), body)


# -- 6. the real client address behind the nginx front ---------------------------------------------
def test_behind_the_front_the_throttle_counts_the_real_client_only_with_the_fronts_secret(
    users: Path, tmp_path: Path
) -> None:
    async def body(c: TestClient[Any, Any]) -> None:
        def via_front(ip: str, password: str, secret: str = "front-secret") -> dict[str, str]:
            return {"Authorization": basic("admin", password), "X-Real-IP": ip, FRONT_HEADER: secret}

        for _ in range(10):
            assert (await c.get("/simple/", headers=via_front("10.0.0.1", "guess"))).status == 401
        assert (await c.get("/simple/", headers=via_front("10.0.0.1", "admin-pw"))).status == 429
        assert (await c.get("/simple/", headers=via_front("10.0.0.2", "admin-pw"))).status == 200
        # a client naming its own address without the secret is counted as the peer it is
        for i in range(10):
            r = await c.get("/simple/", headers=via_front(f"10.1.0.{i}", "guess", secret="guessed"))
            assert r.status == 401
        assert (await c.get("/simple/", headers=via_front("10.0.0.3", "admin-pw", secret="x"))).status == 429
        assert (await c.get("/simple/", headers=via_front("10.0.0.3", "admin-pw"))).status == 200

    run_app(Store(tmp_path / "p"), settings(users, auth_reads=True, front_secret="front-secret"), body)


def test_the_fronts_nginx_conf_names_the_client_and_drops_root(tmp_path: Path) -> None:
    store = Store(tmp_path / "p")
    if os.geteuid() == 0:
        tmp_path.parent.chmod(0o700)
        with pytest.raises(StoreError, match=r"workers run as nobody, who cannot reach the store .* chmod o\+x"):
            nginx_conf(store, "127.0.0.1:1", 2, 1 << 20, "s3cr3t")
        for d in (tmp_path, *tmp_path.parents):
            d.chmod(d.stat().st_mode | 0o001)
    conf = nginx_conf(store, "127.0.0.1:1", 2, 1 << 20, "s3cr3t")
    text = conf.read_text()
    assert text.count("proxy_set_header X-Real-IP $remote_addr;") == 2
    assert text.count(f'proxy_set_header {FRONT_HEADER} "s3cr3t";') == 2
    assert conf.stat().st_mode & 0o077 == 0  # the secret is the app's and nginx's alone
    if os.geteuid() == 0:
        assert "user nobody " in text


# -- 8. the smaller ones ---------------------------------------------------------------------------
def test_yank_racing_delete_never_fails_but_as_not_found(tmp_path: Path) -> None:
    store = Store(tmp_path / "p")
    wheel = make_wheel(tmp_path, "demo-pkg", "1.0")
    errors: list[BaseException] = []

    def yanker() -> None:
        for _ in range(200):
            try:
                store.yank(wheel.name, "race")
            except StoreError:
                pass
            except BaseException as e:
                errors.append(e)

    for _ in range(5):
        store.add_file(wheel)
        t = threading.Thread(target=yanker)
        t.start()
        time.sleep(0.005)
        store.delete(wheel.name)
        t.join()
    assert not errors, errors


def test_packages_serves_distributions_and_artifacts_only_and_health_hides_counts(users: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "p")
    store.add_file(make_wheel(tmp_path, "demo-pkg", "1.0"))
    (store.root / "htpasswd").write_text("admin:$2b$secret\n")
    (store.root / "notes.txt").write_text("private\n")

    async def body(c: TestClient[Any, Any]) -> None:
        for name in ("htpasswd", "notes.txt", "htpasswd.metadata"):
            assert (await c.get(f"/packages/{name}", headers=auth("reader"))).status == 404, name
        assert (await c.get("/packages/demo_pkg-1.0-py3-none-any.whl", headers=auth("reader"))).status == 200
        assert await (await c.get("/health")).json() == {"ok": True}
        r = await c.delete("/api/files/demo_pkg-1.0-py3-none-any.whl", headers=auth("admin"))
        assert r.status == 200
        r = await c.post("/api/files/demo_pkg-1.0-py3-none-any.whl/yank", json={}, headers=auth("admin"))
        assert r.status == 404

    run_app(store, settings(users, auth_reads=True), body)
