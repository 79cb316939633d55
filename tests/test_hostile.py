"""Hostile input against the index app, in-process (aiohttp's test client): every case gets a 4xx
(or 507 for a full disk), and a refused upload leaves the store byte-identical and lists nothing."""

from __future__ import annotations

import base64
import errno
import gzip
import io
import json
import os
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from uploads import basic, multipart, run_app, upload_fields
from wheelmaker import make_wheel

from jetwheel.index.server.app import Settings
from jetwheel.index.server.config import add_user
from jetwheel.index.store import durable
from jetwheel.index.store import store as store_module
from jetwheel.index.store.store import Store

USER, PASSWORD = "ci", "s3cret-pass"
AUTH = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
FN = "demo_pkg-1.0-py3-none-any.whl"


def tree(root: Path) -> dict[str, bytes]:
    """Everything under the store, derived data included, except the lock files and the login state
    (the token key, the failed-login throttle)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
        and not p.is_symlink()
        and not p.name.endswith("lock")
        and p.name not in ("token.key", "throttle")
    }


@pytest.fixture
def index(tmp_path: Path) -> Iterator[tuple[Store, Settings]]:
    htpasswd = tmp_path / "htpasswd"
    add_user(htpasswd, USER, PASSWORD)
    store = Store(tmp_path / "packages", max_upload=1 << 20)
    store.add_file(make_wheel(tmp_path, "existing", "1.0"))
    yield store, Settings(htpasswd=htpasswd, roles={USER: "admin"})


@pytest.fixture(scope="session")
def metadata_bomb(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A wheel whose METADATA inflates to 1 GiB (about 1 MB on the wire)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("demo_pkg-1.0.dist-info/METADATA", "w", force_zip64=True) as f:
            f.write(b"Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\nSummary: ")
            block = b" " * (1 << 20)
            for _ in range(1024):
                f.write(block)
        zf.writestr("demo_pkg-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nTag: py3-none-any\n")
    return buf.getvalue()


def _cases(tmp: Path, bomb: bytes) -> list[tuple[str, bytes, dict[str, str], int]]:
    good = make_wheel(tmp, "demo-pkg", "1.0").read_bytes()

    def case(
        label: str, filename: str | bytes | None, data: bytes, status: int, **fields: str
    ) -> tuple[str, bytes, dict[str, str], int]:
        f = upload_fields(data)
        f.update(fields)
        return label, multipart(f, filename, data), {}, status

    for d in "ovutze":
        (tmp / d).mkdir()
    other = make_wheel(tmp / "o", "demo-pkg", "1.0", meta_name="other-pkg")
    wrong_version = make_wheel(tmp / "v", "demo-pkg", "1.0", meta_version="2.0").read_bytes()
    non_utf8 = make_wheel(
        tmp / "u",
        "demo-pkg",
        "1.0",
        metadata=b"Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\nSummary: \xff\xfe\n",
    ).read_bytes()
    traversal_member = make_wheel(tmp / "t", "demo-pkg", "1.0", extra={"../../etc/evil": b"x"}).read_bytes()
    no_metadata = make_wheel(tmp / "z", "demo-pkg", "1.0", metadata=b"")
    with zipfile.ZipFile(no_metadata) as zf:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as out:
            for item in zf.namelist():
                if not item.endswith("METADATA"):
                    out.writestr(item, zf.read(item))
    dup = make_wheel(tmp / "e", "existing", "1.0").read_bytes()
    long_name = "a" * 220 + "-1.0-py3-none-any.whl"  # 241 bytes: past the store's 240
    deep = "[" * 100_000 + "]" * 100_000
    body_ok = multipart(upload_fields(good), FN, good)
    return [
        case("corrupt zip", FN, b"PK\x03\x04 this is not a zip" * 10, 400),
        case("truncated wheel", FN, good[: len(good) // 2], 400),
        case("wrong sha256", FN, good, 400, sha256_digest="0" * 64),
        case("wrong md5", FN, good, 400, md5_digest="0" * 32),
        case("name mismatch filename vs METADATA", FN, other.read_bytes(), 400),
        case("version mismatch filename vs METADATA", FN, wrong_version, 400),
        case("path traversal filename", "../" + FN, good, 400),
        case("slash in filename", "sub/" + FN, good, 400),
        case("backslash in filename", "sub\\" + FN, good, 400),
        case("control character in filename", "demo_pkg-1.0-py3-none-any\x01.whl", good, 400),
        case("leading dot filename", "." + FN, good, 400),
        case("invalid wheel filename", "demo.whl", good, 400),
        case("unsupported file type", "demo_pkg-1.0.exe", good, 400),
        case("oversized", "big_pkg-1.0-py3-none-any.whl", b"x" * ((1 << 20) + 1), 413),
        case("duplicate", "existing-1.0-py3-none-any.whl", dup, 409, name="existing"),
        case("non-UTF-8 metadata", FN, non_utf8, 400),
        case("member escapes install dir", FN, traversal_member, 400),
        case("no METADATA", FN, buf.getvalue(), 400),
        case("form name differs from file", FN, good, 400, name="torch"),
        case("unsupported action", FN, good, 400, **{":action": "remove_pkg"}),
        case("name too long for the store (241 bytes)", long_name, good, 400, name="a" * 220),
        case("name past the file system's 255 bytes", "b" * 234 + "-1.0-py3-none-any.whl", good, 400),
        case("non-UTF-8 artifact name", b"nvpl_\xff\xfe.tar", good, 400, jetwheel_artifact="1"),
        case("100,000-deep JSON provenance", FN, good, 400, jetwheel_provenance=deep),
        case("JSON provenance deeper than 64", FN, good, 400, jetwheel_provenance='{"a":' * 70 + "1" + "}" * 70),
        case("METADATA inflating to 1 GiB", FN, bomb, 413),
        case("facts that are not gzip", FN, good, 400, jetwheel_facts="{}"),
        ("no content part", multipart(upload_fields(good), None, b""), {}, 400),
        ("broken multipart", b"--xXx\r\nContent-Disposition: form-da", {}, 400),
        ("not multipart", b'{"x": 1}', {"ctype": "application/json"}, 400),
        ("no auth", body_ok, {"auth": ""}, 401),
        ("wrong password", body_ok, {"auth": basic(USER, "nope")}, 401),
        ("unknown user", body_ok, {"auth": basic("nobody", "nope")}, 401),
        ("NUL in the password", body_ok, {"auth": basic(USER, "s3cret\x00pass")}, 400),
        ("5,000-byte password", body_ok, {"auth": basic(USER, "p" * 5000)}, 400),
        ("credentials not base64", body_ok, {"auth": "Basic %%%"}, 400),
        ("credentials not UTF-8", body_ok, {"auth": basic(b"\xff\xfe", b"x")}, 400),
        ("not Basic", body_ok, {"auth": "Bearer abc"}, 400),
        ("expired token", body_ok, {"auth": basic("token", "jw1.read.1.AAAA")}, 401),
    ]


def test_hostile_uploads_get_4xx_list_nothing_and_leave_the_store_byte_identical(
    index: tuple[Store, Settings], tmp_path: Path, metadata_bomb: bytes
) -> None:
    store, settings = index
    cases = _cases(tmp_path, metadata_bomb)
    assert len(cases) >= 39
    before = tree(store.root)

    async def body(client: TestClient[Any, Any]) -> None:
        listed = (await (await client.get("/simple/")).read()).decode()
        for name, data, opts, status in cases:
            auth = opts.get("auth", AUTH)
            headers = {"Content-Type": opts.get("ctype", "multipart/form-data; boundary=xXx")}
            if auth:
                headers["Authorization"] = auth
            r = await client.post("/", data=data, headers=headers)
            text = await r.text()
            assert r.status == status, f"{name}: got {r.status} {text!r}"
            assert len(text.strip().splitlines()) <= 1, name
            assert tree(store.root) == before, f"{name}: the store changed"
            assert (await (await client.get("/simple/")).read()).decode() == listed, f"{name}: listed"
            assert (await client.get("/")).status == 200, f"{name}: the home page broke"

    run_app(store, settings, body)


def test_long_names_within_the_limit_are_stored_and_served(index: tuple[Store, Settings], tmp_path: Path) -> None:
    store, settings = index
    name = "a" * 215  # 236 bytes as a wheel filename, 245 as its .metadata
    wheel = make_wheel(tmp_path, name, "1.0")
    assert len(wheel.name) == 236

    async def body(client: TestClient[Any, Any]) -> None:
        data = wheel.read_bytes()
        r = await client.post(
            "/",
            data=multipart(upload_fields(data, name), wheel.name, data),
            headers={"Authorization": AUTH, "Content-Type": "multipart/form-data; boundary=xXx"},
        )
        assert r.status == 200, await r.text()
        assert (await client.get(f"/packages/{wheel.name}.metadata")).status == 200
        for path in ("/packages/" + "m" * 241 + ".metadata", "/packages/" + "m" * 300, "/api/facts/" + "m" * 300):
            r = await client.get(path)
            assert r.status == 400, (path[:30], r.status)

    run_app(store, settings, body)
    assert (store.root / wheel.name).is_file()


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_full_disk_at_each_step_is_507_nothing_listed_and_the_retry_succeeds(
    index: tuple[Store, Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: int
) -> None:
    """ENOSPC injected into the n-th write of derived data (file record, METADATA, generation):
    the commit comes after all of them, so the refused upload leaves nothing and a retry works."""
    store, settings = index
    before = tree(store.root)
    real = durable.write_staged  # the store calls it by the name it imported: patched there
    calls = {"n": 0}

    def full(tmpdir: Path, data: bytes) -> Path:
        calls["n"] += 1
        if calls["n"] == stage:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tmpdir, data)

    wheel = make_wheel(tmp_path, "demo-pkg", "1.0")
    data = wheel.read_bytes()
    post = {
        "data": multipart(upload_fields(data), FN, data),
        "headers": {"Authorization": AUTH, "Content-Type": "multipart/form-data; boundary=xXx"},
    }

    async def body(client: TestClient[Any, Any]) -> None:
        monkeypatch.setattr(store_module, "write_staged", full)
        r = await client.post("/", **post)
        assert r.status == 507 and "disk is full" in await r.text()
        assert tree(store.root) == before
        assert b"demo-pkg" not in await (await client.get("/simple/")).read()
        monkeypatch.setattr(store_module, "write_staged", real)
        r = await client.post("/", **post)
        assert r.status == 200, await r.text()
        assert b"demo-pkg" in await (await client.get("/simple/")).read()

    run_app(store, settings, body)


def test_a_real_full_disk_is_507_and_leaves_nothing(tmp_path: Path) -> None:
    """A 2 MiB tmpfs as the store: an upload that does not fit is refused with 507, no leftovers."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)]).returncode != 0:
        pytest.fail("cannot mount a tmpfs here (the test needs root)")
    try:
        htpasswd = tmp_path / "htpasswd"
        add_user(htpasswd, USER, PASSWORD)
        store = Store(mnt / "packages")
        before = tree(store.root)
        big = make_wheel(tmp_path, "big-pkg", "1.0", extra={"big_pkg/blob": os.urandom(3 << 20)}).read_bytes()
        small = make_wheel(tmp_path, "small-pkg", "1.0")

        async def body(client: TestClient[Any, Any]) -> None:
            headers = {"Authorization": AUTH, "Content-Type": "multipart/form-data; boundary=xXx"}
            name = "big_pkg-1.0-py3-none-any.whl"
            r = await client.post("/", data=multipart(upload_fields(big, "big-pkg"), name, big), headers=headers)
            assert r.status == 507, await r.text()
            assert tree(store.root) == before and list(store.tmp.iterdir()) == []
            raw = small.read_bytes()
            r = await client.post(
                "/", data=multipart(upload_fields(raw, "small-pkg"), small.name, raw), headers=headers
            )
            assert r.status == 200

        run_app(store, Settings(htpasswd=htpasswd), body)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_symlinks_in_the_root_are_never_followed(index: tuple[Store, Settings], tmp_path: Path) -> None:
    store, settings = index
    outside = make_wheel(tmp_path, "outside", "1.0")
    (store.root / "outside-1.0-py3-none-any.whl").symlink_to(outside)
    (store.root / "passwd.tar").symlink_to("/etc/passwd")
    (store.state / "metadata" / "outside-1.0-py3-none-any.whl.metadata").symlink_to("/etc/passwd")

    async def body(client: TestClient[Any, Any]) -> None:
        assert b"outside" not in await (await client.get("/simple/")).read()
        for path in (
            "/packages/outside-1.0-py3-none-any.whl",
            "/packages/passwd.tar",
            "/packages/outside-1.0-py3-none-any.whl.metadata",
            "/api/files/passwd.tar",
        ):
            assert (await client.get(path)).status == 404, path
        r = await client.delete("/api/files/passwd.tar", headers={"Authorization": AUTH})
        assert r.status == 404
        assert (await client.get("/")).status == 200

    run_app(store, settings, body)
    assert Path("/etc/passwd").is_file()


def test_a_non_utf8_file_copied_in_by_hand_breaks_nothing(index: tuple[Store, Settings]) -> None:
    store, settings = index
    with open(os.path.join(os.fsencode(store.root), b"nvpl_\xff.tar"), "wb") as f:
        f.write(b"x")

    async def body(client: TestClient[Any, Any]) -> None:
        for path in ("/", "/simple/", "/api/status"):
            assert (await client.get(path)).status == 200, path

    run_app(store, settings, body)


def test_startup_cleans_staging_and_orphan_derived_files(index: tuple[Store, Settings]) -> None:
    store, _ = index
    kept = tree(store.root)
    (store.tmp / "upload-x.part").write_bytes(b"half")
    (store.tmp / "derived-y").write_bytes(b"{}")
    for kind, name in (("meta", "gone-1.0-py3-none-any.whl.json"), ("metadata", "gone-1.0-py3-none-any.whl.metadata")):
        (store.state / kind / name).write_bytes(b"{}")
    (store.state / "facts" / "gone-1.0-py3-none-any.whl.gz").write_bytes(gzip.compress(b"{}"))
    with store.staging() as (live, live_path):  # another server's upload, still streaming in
        live.write(b"half an upload")
        assert Store(store.root).clean() == 4  # the unlocked upload and the orphans; derived-y is young
        assert Store(store.root).clean(grace=0) == 1  # derived-y; the live upload is locked
        assert live_path.exists()
    assert not list(store.tmp.iterdir())
    assert tree(store.root) == kept


def test_facts_are_stored_after_the_commit_and_served_as_sent(index: tuple[Store, Settings], tmp_path: Path) -> None:
    store, settings = index
    wheel = make_wheel(tmp_path, "facty", "1.0")
    facts = gzip.compress(json.dumps({"elf": ["x"] * 1000}).encode())

    async def body(client: TestClient[Any, Any]) -> None:
        data = wheel.read_bytes()
        f = upload_fields(data, "facty")
        payload = multipart(f, wheel.name, data).replace(
            b"--xXx--\r\n",
            b'--xXx\r\nContent-Disposition: form-data; name="jetwheel_facts"; filename="f.gz"\r\n\r\n'
            + facts
            + b"\r\n--xXx--\r\n",
        )
        headers = {"Authorization": AUTH, "Content-Type": "multipart/form-data; boundary=xXx"}
        assert (await client.get(f"/api/facts/{wheel.name}")).status == 404
        r = await client.post("/", data=payload, headers=headers)
        assert r.status == 200, await r.text()
        r = await client.get(f"/api/facts/{wheel.name}")
        assert r.status == 200 and await r.read() == facts
        assert (await client.get("/api/facts/existing-1.0-py3-none-any.whl")).status == 404
        r = await client.delete(f"/api/files/{wheel.name}", headers={"Authorization": AUTH})
        assert r.status == 200
        assert (await client.get(f"/api/facts/{wheel.name}")).status == 404

    run_app(store, settings, body)
