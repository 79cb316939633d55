"""The work an upload buys is bounded by what it sends (issue 29): inflation and member count
capped from the headers, each upload's checks in a pool of their own that stops when the uploader
hangs up, profile resolution within a time budget, logins that do not queue behind strangers'."""

from __future__ import annotations

import asyncio
import base64
import email
import io
import platform
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientTimeout
from aiohttp.test_utils import TestClient, TestServer
from conftest import free_port
from packaging.markers import Marker
from uploads import basic, run_app, upload_request
from wheelmaker import make_wheel, zeros_wheel

from jetwheel.errors import Abandoned, TooLarge, UploadRejected
from jetwheel.index.server import profiles as compat
from jetwheel.index.server.app import INDEX, Settings, make_app
from jetwheel.index.server.config import add_user
from jetwheel.index.server.profiles import ProfileView
from jetwheel.index.server.resolve import resolve
from jetwheel.index.server.throttle import THROTTLE, SharedThrottle
from jetwheel.index.store import validate
from jetwheel.index.store.store import Store
from jetwheel.target import Target
from jetwheel.workflow.serve import wait_ready

USER, PASSWORD = "ci", "s3cret-pass"
BUILDER, BUILDER_PASSWORD = "bob", "builder-pass"
AUTH = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
BUILDER_AUTH = "Basic " + base64.b64encode(f"{BUILDER}:{BUILDER_PASSWORD}".encode()).decode()
FN = "demo_pkg-1.0-py3-none-any.whl"
META = b"Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\n"


def many_members_wheel(count: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("demo_pkg-1.0.dist-info/METADATA", META)
        for i in range(count):
            zf.writestr(f"m/{i}", b"")
    return buf.getvalue()


def wheel_in(where: Path, name: str) -> bytes:
    where.mkdir(parents=True, exist_ok=True)
    return make_wheel(where, name, "1.0").read_bytes()


async def log_in(client: TestClient[Any, Any], *auths: str) -> None:
    """Log in once (bcrypt, then remembered), so that what a test times is the upload alone."""
    for auth in auths:
        r = await client.post("/", data=b"x", headers={"Authorization": auth, "Content-Type": "text/plain"})
        assert r.status == 400  # let in, then refused: not multipart


@pytest.fixture
def index(tmp_path: Path) -> Iterator[tuple[Store, Settings]]:
    htpasswd = tmp_path / "htpasswd"
    add_user(htpasswd, USER, PASSWORD)
    add_user(htpasswd, BUILDER, BUILDER_PASSWORD)
    store = Store(tmp_path / "packages")
    store.add_file(make_wheel(tmp_path, "existing", "1.0"))
    yield store, Settings(htpasswd=htpasswd, roles={USER: "upload", BUILDER: "builder"})


def test_a_wheel_inflating_past_its_budget_is_413_from_its_headers_without_inflating(tmp_path: Path) -> None:
    bomb = tmp_path / FN
    # ~130 kB declaring 128 MiB: past 64 MiB and 50x
    bomb.write_bytes(zeros_wheel("demo-pkg", 128 << 20, tag="py3-none-any"))
    assert validate.inflate_budget(bomb.stat().st_size) == validate.INFLATE_FLOOR
    start = time.process_time()
    with pytest.raises(UploadRejected) as e:
        validate.inspect_wheel(bomb, FN)
    assert isinstance(e.value, TooLarge) and "inflates at most 50x" in str(e.value)
    assert time.process_time() - start < 0.1  # refused from the headers: nothing inflated
    ok = tmp_path / "ok" / FN
    ok.parent.mkdir()
    # under the 64 MiB floor: a real wheel of that shape passes
    ok.write_bytes(zeros_wheel("demo-pkg", 32 << 20, tag="py3-none-any"))
    assert validate.inspect_wheel(ok, FN).project == "demo-pkg"
    bz = tmp_path / "bz" / FN
    bz.parent.mkdir()
    with zipfile.ZipFile(bz, "w", zipfile.ZIP_BZIP2) as zf:  # ~1,000,000:1 for zeros, and slow to inflate
        zf.writestr("demo_pkg-1.0.dist-info/METADATA", META)
    with pytest.raises(UploadRejected, match="stored or deflated"):
        validate.inspect_wheel(bz, FN)


def test_a_wheel_of_too_many_members_is_413_before_zipfile_lists_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    many = tmp_path / FN
    many.write_bytes(many_members_wheel(validate.MAX_MEMBERS + 1))
    listed = []
    monkeypatch.setattr(zipfile.ZipFile, "_RealGetContents", lambda self: listed.append(1))
    with pytest.raises(UploadRejected) as e:
        validate.inspect_wheel(many, FN)
    assert isinstance(e.value, TooLarge) and f"more than {validate.MAX_MEMBERS} members" in str(e.value)
    assert not listed  # refused from the central directory's bytes, before zipfile built a member list
    monkeypatch.undo()
    small = make_wheel(tmp_path, "x", "1.0")
    assert validate.count_members(small) == len(zipfile.ZipFile(small).infolist())


def test_a_check_stops_at_its_next_chunk_when_told(tmp_path: Path) -> None:
    wheel = tmp_path / FN
    wheel.write_bytes(zeros_wheel("demo-pkg", 48 << 20, tag="py3-none-any"))
    calls = []

    def stop() -> bool:
        calls.append(1)
        return True

    with pytest.raises(UploadRejected) as e:
        validate.inspect_wheel(wheel, FN, stop)
    assert isinstance(e.value, Abandoned) and len(calls) == 1


def test_through_the_app_a_bomb_is_413_with_one_line_and_stores_nothing(index: tuple[Store, Settings]) -> None:
    store, settings = index
    bomb = zeros_wheel("demo-pkg", 128 << 20, tag="py3-none-any")
    many = many_members_wheel(validate.MAX_MEMBERS + 1)

    async def body(client: TestClient[Any, Any]) -> None:
        for data in (bomb, many):
            body, headers = upload_request(data, FN, AUTH)
            r = await client.post("/", data=body, headers=headers)
            text = await r.text()
            assert r.status == 413 and len(text.strip().splitlines()) == 1, text
        assert "demo-pkg" not in store.projects()

    run_app(store, settings, body)


def test_an_upload_check_never_takes_the_pool_downloads_or_builders_use(
    index: tuple[Store, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six upload users' checks that never end: a download and a builder's upload still answer at once."""
    store, settings = index
    release = threading.Event()
    real = validate.inspect_wheel

    def slow(path: Path, filename: str, stop: Any = lambda: False) -> validate.Distribution:
        deadline = time.monotonic() + 10  # bounded, even where nothing tells it to stop
        if filename.startswith("bomb"):
            while not (release.is_set() or stop()) and time.monotonic() < deadline:
                time.sleep(0.01)
        return real(path, filename, stop)

    monkeypatch.setattr("jetwheel.index.store.store.inspect_wheel", slow)
    builder_wheel = wheel_in(store.root.parent / "b", "fine")

    async def body(client: TestClient[Any, Any]) -> None:
        await log_in(client, AUTH, BUILDER_AUTH)
        bombs = []
        for i in range(6):
            w = wheel_in(store.root.parent / f"w{i}", f"bomb{i}")
            body, headers = upload_request(w, f"bomb{i}-1.0-py3-none-any.whl", AUTH, f"bomb{i}")
            bombs.append(asyncio.create_task(client.post("/", data=body, headers=headers)))
        await asyncio.sleep(0.5)  # the six are in their checks now
        start = time.monotonic()
        got = await client.get("/packages/existing-1.0-py3-none-any.whl")
        assert got.status == 200 and time.monotonic() - start < 0.5
        start = time.monotonic()
        body, headers = upload_request(builder_wheel, "fine-1.0-py3-none-any.whl", BUILDER_AUTH, "fine")
        r = await client.post("/", data=body, headers=headers)
        assert r.status == 200, await r.text()
        assert time.monotonic() - start < 0.5
        release.set()
        assert [(await b).status for b in bombs] == [200] * 6

    run_app(store, settings, body)


def test_a_check_ends_when_its_uploader_hangs_up(
    index: tuple[Store, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, settings = index
    stopped = threading.Event()
    real = validate.inspect_wheel

    def waits_for_stop(path: Path, filename: str, stop: Any = lambda: False) -> validate.Distribution:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if stop():
                stopped.set()
                raise Abandoned("abandoned")
            time.sleep(0.01)
        return real(path, filename, stop)

    monkeypatch.setattr("jetwheel.index.store.store.inspect_wheel", waits_for_stop)
    w = wheel_in(store.root.parent / "h", "demo-pkg")

    async def body(client: TestClient[Any, Any]) -> None:
        await log_in(client, AUTH)
        body, headers = upload_request(w, FN, AUTH)
        with pytest.raises(asyncio.TimeoutError):
            await client.post("/", data=body, headers=headers, timeout=ClientTimeout(total=0.5))
        for _ in range(50):
            if stopped.is_set():
                break
            await asyncio.sleep(0.1)
        assert stopped.is_set()
        assert "demo-pkg" not in store.projects()

    run_app(store, settings, body)


# -- profile resolution ------------------------------------------------------------------------------
def _target() -> Target:
    return Target(f"{sys.version_info.major}.{sys.version_info.minor}", f"linux_{platform.machine()}", "", "")


def _wheel(store: Store, where: Path, name: str, requires: tuple[str, ...]) -> None:
    where.mkdir(parents=True, exist_ok=True)
    store.add_file(make_wheel(where, name, "1.0", requires=requires))


def _extras_store(tmp_path: Path, n: int) -> Store:
    """`top` needs `mid` with n extras; `mid` has n Requires-Dist, each under one extra."""
    store = Store(tmp_path / "packages")
    extras = ",".join(f"x{i}" for i in range(n))
    _wheel(store, tmp_path / "t", "top", (f"mid[{extras}]",))
    _wheel(store, tmp_path / "m", "mid", tuple(f'leaf; extra == "x{i}" and python_version >= "3"' for i in range(n)))
    _wheel(store, tmp_path / "l", "leaf", ())
    return store


def test_each_marker_is_evaluated_once_not_once_per_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _extras_store(tmp_path, 200)
    calls = []
    real = Marker.evaluate

    def counted(self: Marker, environment: Any = None, context: Any = "metadata") -> bool:
        calls.append(1)
        return bool(real(self, environment))

    monkeypatch.setattr(Marker, "evaluate", counted)
    got = resolve(store, ["top"], _target())
    assert got.installs == ("leaf==1.0", "mid==1.0", "top==1.0")
    assert len(calls) <= 2 * 200  # per marker: the extra it names, and one for all the others (not 200 x 200)


def test_resolution_stops_at_its_time_budget_with_one_line(tmp_path: Path) -> None:
    store = _extras_store(tmp_path, 20)
    start = time.monotonic()
    got = resolve(store, ["top"], _target(), budget=0.0)
    assert time.monotonic() - start < 1
    assert got.missing == ("top (no resolution within 0 s)",)
    assert resolve(store, ["top"], _target(), stop=lambda: True).missing == ("top (stopped)",)


def test_a_marker_that_cannot_be_evaluated_marks_its_file_and_never_stops_the_checker(tmp_path: Path) -> None:
    store = Store(tmp_path / "packages")
    _wheel(store, tmp_path / "d", "demo-pkg", ('leaf; python_version >= "3"',))
    _wheel(store, tmp_path / "l", "leaf", ())
    bad = "demo_pkg-1.0-py3-none-any.whl"
    metadata = store.metadata_path(bad)  # copied in by hand: an upload with this marker is refused
    metadata.write_bytes(metadata.read_bytes().replace(b'python_version >= "3"', b'python_version ~= "3"'))
    view = ProfileView("demo", "demo-pkg==1.0", {"demo-pkg": "1.0"}, _target())
    result = compat.check(store, view)
    assert not result.passed and f"left out: {bad}: Requires-Dist marker" in result.detail
    settings = Settings(profiles={"demo": view}, check_profiles=True)

    async def main() -> None:
        async with TestClient(TestServer(make_app(store, settings))):
            for _ in range(60):  # the checker settles 2 s, then records its result
                await asyncio.sleep(0.25)
                if compat.read(store)[0] == list(store.generation()):
                    break
            assert compat.read(store)[1]["demo"] == result

    asyncio.run(main())
    with pytest.raises(UploadRejected, match="marker cannot be evaluated"):
        validate.check_requirements(email.message_from_string('Requires-Dist: leaf; python_version ~= "3"\n'), "M")


def test_check_profiles_answers_one_line_per_profile_when_a_file_cannot_be_evaluated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from invoke.program import Program

    from jetwheel.cli import namespace

    store = Store(tmp_path / "packages")
    _wheel(store, tmp_path / "d", "demo-pkg", ('leaf; python_version >= "3"',))
    metadata = store.metadata_path("demo_pkg-1.0-py3-none-any.whl")
    metadata.write_bytes(metadata.read_bytes().replace(b'python_version >= "3"', b'python_version ~= "3"'))
    view = ProfileView("demo", "demo-pkg==1.0", {"demo-pkg": "1.0"}, _target())
    monkeypatch.setattr("jetwheel.workflow.index.profile_views", lambda root=None: {"demo": view})
    prog = Program(namespace=namespace, name="jetwheel", binary="jetwheel")
    prog.run(["jetwheel", "index.check-profiles", "--root", str(store.root)], exit=False)
    out = capsys.readouterr()
    assert out.out.startswith("FAIL  demo: demo-pkg==1.0: no ") and "left out: demo_pkg-1.0" in out.out
    assert len(out.out.splitlines()) == 1 and "Traceback" not in out.err


# -- logins ------------------------------------------------------------------------------------------
def test_the_throttle_is_one_count_for_every_worker(index: tuple[Store, Settings]) -> None:
    """Two workers of one store (two apps): five failures on each are ten, and the next is 429 on both."""
    store, settings = index
    settings = Settings(htpasswd=settings.htpasswd, roles=settings.roles, auth_reads=True)
    wrong = {"Authorization": "Basic " + base64.b64encode(f"{USER}:nope".encode()).decode()}

    async def main() -> None:
        async with (
            TestClient(TestServer(make_app(store, settings))) as one,
            TestClient(TestServer(make_app(store, settings))) as two,
        ):
            for _ in range(5):
                assert (await one.get("/simple/", headers=wrong)).status == 401
                assert (await two.get("/simple/", headers=wrong)).status == 401
            assert (await one.get("/simple/", headers={"Authorization": AUTH})).status == 429
            assert (await two.get("/simple/", headers={"Authorization": AUTH})).status == 429

    asyncio.run(main())
    a, b = SharedThrottle(store.state_path(THROTTLE)), SharedThrottle(store.state_path(THROTTLE))
    now = time.time()
    for _ in range(10):
        a.failed("10.0.0.9", now)
    assert b.wait("10.0.0.9", now + 1) == pytest.approx(59) and b.wait("10.0.0.8", now) == 0
    assert b.wait("10.0.0.9", now + 61) == 0  # the window ended


def test_unknown_users_take_no_thread_so_a_known_login_does_not_wait_behind_them(
    index: tuple[Store, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, settings = index
    settings = Settings(htpasswd=settings.htpasswd, roles=settings.roles, auth_reads=True)
    app = make_app(store, settings)
    users = app[INDEX].guard.users
    verified: list[str] = []
    real = users.verify

    def spy(creds: Any, stored: str) -> str | None:
        verified.append(creds.user)
        return real(creds, stored)

    monkeypatch.setattr(users, "verify", spy)

    async def main() -> None:
        async with TestClient(TestServer(app)) as c:
            strangers = [
                asyncio.create_task(c.get("/simple/", headers={"Authorization": basic(f"nobody{i}", "x")}))
                for i in range(8)
            ]
            await asyncio.sleep(0.05)
            start = time.monotonic()
            assert (await c.get("/simple/", headers={"Authorization": AUTH})).status == 200
            known = time.monotonic() - start
            assert [(await s).status for s in strangers] == [401] * 8
            # eight strangers' bcrypts in a two-thread pool would be four bcrypts ahead of this one
            assert known < 2.5 * users.unknown_cost + 0.2, (known, users.unknown_cost)

    asyncio.run(main())
    assert verified == [USER]  # the strangers cost no bcrypt, no thread


# -- stopping ----------------------------------------------------------------------------------------
SERVE = """
import sys, platform
from pathlib import Path
from jetwheel.index.server.app import Settings
from jetwheel.index.server.profiles import ProfileView
from jetwheel.index.server import resolve, server
from jetwheel.target import Target
import time
resolve.BUDGET = 600.0
identify = resolve._Provider.identify
def slow(self, requirement_or_candidate):  # every step of the check 0.1 s: ~30 s in all
    time.sleep(0.1)
    return identify(self, requirement_or_candidate)
resolve._Provider.identify = slow
print("serving", flush=True)
here = Target(f"{sys.version_info.major}.{sys.version_info.minor}", f"linux_{platform.machine()}", "", "")
view = ProfileView("demo", "top", {"top": "1.0"}, here)
server.serve(Path(sys.argv[1]), "127.0.0.1", int(sys.argv[2]), Settings(profiles={"demo": view}, check_profiles=True))
"""


def test_the_server_stops_within_5_s_of_sigterm_during_a_long_profile_check(tmp_path: Path) -> None:
    store = _extras_store(tmp_path, 300)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVE, str(store.root), str(port)], stderr=subprocess.PIPE)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
        time.sleep(4)  # the checker settles 2 s, then starts its check: under way now
        assert not store.state_path(compat.COMPAT).exists()
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        took = time.monotonic() - start
        assert took < 5, took
        assert b"exiting now" not in (proc.stderr.read() if proc.stderr else b"")  # it stopped, not cut off
    finally:
        proc.kill()
        proc.wait()
