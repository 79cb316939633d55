# ruff: noqa: RUF001  (look-alike letters, on purpose)
"""Issue 29, the ownership half, in-process: every name has an owner, dependency confusion is closed,
look-alikes are judged with Unicode's table, the page shows trust as it is, tokens carry the user's
stamp, and an image's reader stays inside the image."""

from __future__ import annotations

import asyncio
import json
import platform
import shutil
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from passlib.apache import HtpasswdFile
from uploads import basic, multipart, upload_fields
from wheelmaker import make_wheel

from jetwheel.errors import AlreadyExists, JetwheelError, NotFound, TooLarge, UsageError
from jetwheel.index.server.app import Settings, make_app
from jetwheel.index.server.auth import TOKEN_KEY, Users, issue_token, token_key
from jetwheel.index.server.config import add_user
from jetwheel.index.store.names import DATA_VERSION, skeleton
from jetwheel.index.store.store import Store
from jetwheel.model.recipe import load_profile
from jetwheel.sources.fetch import IndexArchive, Lookup, Upstream, find
from jetwheel.triton.buildpy import nvpl_slim_url, untrusted_pins
from jetwheel.verify.policy import library_dirs, read_tree
from jetwheel.workflow.index import issue_token as issue_cli_token

ROLES = {"admin": "admin", "builder": "builder", "reader": "read"}  # up, up2: upload
OWNED = frozenset({"torch", "pytorch-triton", "vllm"})
ARTIFACTS = frozenset({"nvpl_slim_24.04.tar", "cutlass-3.8.0.tar.gz", "flash-attention-9bfa9869.tar.gz"})
CT = "multipart/form-data; boundary=xXx"
JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


@pytest.fixture(scope="module")
def made_users(tmp_path_factory: pytest.TempPathFactory) -> Path:
    htpasswd = tmp_path_factory.mktemp("users") / "htpasswd"
    for user in ("admin", "builder", "up", "up2", "reader"):
        add_user(htpasswd, user, f"{user}-pw")  # bcrypt: made once, copied per test
    return htpasswd


@pytest.fixture
def users(made_users: Path, tmp_path: Path) -> Path:
    return Path(shutil.copy(made_users, tmp_path / "htpasswd"))


def settings(users: Path, **kw: Any) -> Settings:
    return Settings(htpasswd=users, roles=ROLES, owned=OWNED, artifacts=ARTIFACTS, **kw)


async def post(c: TestClient[Any, Any], user: str, filename: str, data: bytes, **fields: str) -> tuple[int, str]:
    f = {**upload_fields(data, filename.split("-")[0]), **fields}
    headers = {"Authorization": basic(user, f"{user}-pw"), "Content-Type": CT}
    r = await c.post("/", data=multipart(f, filename, data), headers=headers)
    return r.status, (await r.text()).strip()


def wheel(tmp: Path, name: str, version: str = "1.0") -> tuple[str, bytes]:
    d = tmp / f"w-{len(list(tmp.glob('w-*')))}"
    d.mkdir()
    p = make_wheel(d, name, version)
    return p.name, p.read_bytes()


def serve(store: Store, s: Settings, body: Any, upstream: dict[str, int] | None = None) -> None:
    """Run `body(client)` against the index app; with `upstream`, a fake upstream index on loopback
    answering each listed project with its status (others 404), counted in upstream['asked:<name>']."""

    async def page(request: web.Request) -> web.StreamResponse:
        assert upstream is not None
        name = request.match_info["name"]
        upstream[f"asked:{name}"] = upstream.get(f"asked:{name}", 0) + 1
        return web.Response(status=upstream.get(name, 404), text="{}")

    async def main() -> None:
        settings = s
        if upstream is not None:
            fake = web.Application()
            fake.router.add_get("/simple/{name}/", page)
            server = TestServer(fake)
            await server.start_server()
            settings = Settings(**{**vars(s), "upstream": str(server.make_url("/simple"))})
        try:
            async with TestClient(TestServer(make_app(store, settings))) as client:
                await body(client)
        finally:
            if upstream is not None:
                await server.close()

    asyncio.run(main())


# -- 1. every name has an owner ------------------------------------------------------------------------
def test_an_upload_users_nvpl_tarball_is_refused_and_the_builders_is_accepted(users: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "p")

    async def body(c: TestClient[Any, Any]) -> None:
        art = {"jetwheel_artifact": "1"}
        status, text = await post(c, "up", "nvpl_slim_24.04.tar", b"evil" * 25, **art)
        assert status == 403 and "an artifact the build consumes" in text, text
        assert (await post(c, "builder", "nvpl_slim_24.04.tar", b"real" * 25, **art))[0] == 200
        assert (await c.get("/packages/nvpl_slim_24.04.tar")).status == 200
        info = await (await c.get("/api/files/nvpl_slim_24.04.tar")).json()
        assert info["published_by"] == "builder"
        # archives are owned by their whole name: pytorch-triton-...-src.tar.gz is not project pytorch
        for user, name, fields, status in [
            ("up", "pytorch-triton-3.2.0-src.tar.gz", art, 403),
            ("up", "flash-attention-9bfa9869.tar.gz", art, 403),
            ("up", "cutlass-3.8.0.tar.gz", {}, 403),  # as an sdist
            ("up", "cutlass-3.8.0.tar.gz", art, 400),  # named like an sdist
            ("admin", "cutlass-3.8.0.tar.gz", art, 200),  # inv sources.upload by an admin
            ("builder", "pytorch-triton-3.2.0-src.tar.gz", art, 200),
            ("up", "my-own-data.tar", art, 200),  # an artifact of a name of its own
        ]:
            got = await post(c, user, name, b"x" * 100, **fields)
            assert got[0] == status, (user, name, got)

    serve(store, settings(users), body)
    assert sorted(f for f in store.files()) == [
        "cutlass-3.8.0.tar.gz",
        "my-own-data.tar",
        "nvpl_slim_24.04.tar",
        "pytorch-triton-3.2.0-src.tar.gz",
    ]


def test_a_project_belongs_to_its_creator_and_outlives_its_files(users: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "p")
    v1, v2, v3 = (wheel(tmp_path, "demo-pkg", v) for v in ("1.0", "1.1", "1.2"))

    async def body(c: TestClient[Any, Any]) -> None:
        assert (await post(c, "up", *v1))[0] == 200
        status, text = await post(c, "up2", *v2)
        assert status == 403 and "a project of user 'up'" in text, text
        assert (await post(c, "builder", *v2))[0] == 403  # a builder does not take a user's project
        assert (await post(c, "up", *v2))[0] == 200
        assert (await post(c, "admin", *v3))[0] == 200  # an admin may (PEP 541: the index's admins)
        for f in list(store.files()):
            store.delete(f)
        assert (await post(c, "up2", *v1))[0] == 403  # the name stays its creator's

    serve(store, settings(users), body)
    assert store.owners()["demo-pkg"].user == "up"


# -- 2. dependency confusion -------------------------------------------------------------------------
def test_a_name_the_upstream_has_is_created_only_by_an_admin_or_a_mirror_run(users: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "p")
    numpy, mine, numpy_b = wheel(tmp_path, "numpy", "0.0.1"), wheel(tmp_path, "only-here"), wheel(tmp_path, "numpy")
    upstream = {"numpy": 200, "filelock": 200}

    async def body(c: TestClient[Any, Any]) -> None:
        status, text = await post(c, "up", *numpy)
        assert status == 403 and "the upstream index has this project" in text, text
        assert (await post(c, "builder", *numpy))[0] == 403  # a builder, but no mirror run
        assert (await post(c, "up", *numpy, jetwheel_mirror="1"))[0] == 403  # a mirror run needs a builder
        assert (await post(c, "up", *numpy))[0] == 403
        assert upstream["asked:numpy"] == 1  # cached
        assert (await post(c, "up", *mine))[0] == 200
        assert (await post(c, "builder", *numpy_b, jetwheel_mirror="1"))[0] == 200
        assert (await post(c, "up", *numpy))[0] == 403  # now the builders' name
        home = await (await c.get("/")).text()
        assert "mirrored from the upstream index" in home and "uploaded by the user up" in home

    serve(store, settings(users), body, upstream)
    assert "asked:only-here" in upstream


def test_an_upstream_that_cannot_answer_refuses_new_names(users: Path, tmp_path: Path) -> None:
    s = settings(users, upstream="http://127.0.0.1:9/simple")  # nothing listens on the discard port

    async def body(c: TestClient[Any, Any]) -> None:
        status, text = await post(c, "up", *wheel(tmp_path, "numpy", "0.0.1"))
        assert status == 503 and "cannot tell whether the upstream index has this project" in text, text

    serve(Store(tmp_path / "p"), s, body)


def test_without_upstream_a_mirrored_name_is_the_builders(users: Path, tmp_path: Path) -> None:
    async def body(c: TestClient[Any, Any]) -> None:
        assert (await post(c, "builder", *wheel(tmp_path, "filelock", "3.16.1"), jetwheel_mirror="1"))[0] == 200
        status, text = await post(c, "up", *wheel(tmp_path, "filelock", "99.0"))
        assert status == 403 and "held by the builders and admins (mirror)" in text, text

    serve(Store(tmp_path / "p"), settings(users), body)


# -- 3. look-alikes from Unicode's table ---------------------------------------------------------------
LOOK_ALIKES = [
    ("tօrch", "torch"),  # Armenian small oh
    ("Ꭲorch", "torch"),  # Cherokee letter i
    ("tᴏrch", "torch"),  # small capital o
    ("ᴠllm", "vllm"),  # small capital v
    ("ɑiohttp", "aiohttp"),  # Latin alpha
    ("ǀxml", "lxml"),  # dental click
    ("ϲython", "cython"),  # Greek lunate sigma
    ("vⅼlm", "vllm"),  # small Roman numeral fifty
    ("ꮯython", "cython"),  # Cherokee small letter
    ("𝐭orch", "torch"),  # mathematical bold t
    ("ｔorch", "torch"),  # fullwidth t
    ("ꓲxml", "lxml"),  # Lisu letter i
    ("filеlock", "filelock"),  # Cyrillic ie
]


def test_the_table_is_unicodes_and_judges_both_directions() -> None:
    assert DATA_VERSION  # the package that ships TR39's data, by its version
    for fake, real in LOOK_ALIKES:
        assert skeleton(fake) == skeleton(real), (fake, real)
    assert skeleton("torch") != skeleton("tourch") and skeleton("numpy") != skeleton("nunpy")


def test_thirteen_look_alikes_are_refused_and_a_squatter_does_not_lock_out_the_real_name(
    users: Path, tmp_path: Path
) -> None:
    store = Store(tmp_path / "p")
    for real in ("aiohttp", "lxml", "cython"):
        store.add_file(make_wheel(tmp_path, real, "1.0"), published_by="builder")

    async def body(c: TestClient[Any, Any]) -> None:
        for fake, _real in LOOK_ALIKES[:-1]:
            status, text = await post(c, "up", *wheel(tmp_path, fake))
            assert status == 400 and "same Unicode TR39 skeleton" in text, (fake, status, text)
        assert (await post(c, "up", *wheel(tmp_path, "filеlock")))[0] == 200  # first, on an empty name
        assert (await post(c, "up2", *wheel(tmp_path, "filelock")))[0] == 400  # another user: refused
        assert (await post(c, "builder", *wheel(tmp_path, "filelock"), jetwheel_mirror="1"))[0] == 200

    serve(store, settings(users), body)


# -- 4. the page shows trust as it is ------------------------------------------------------------------
def test_the_page_shows_badges_and_provenance_only_for_a_builders_file(users: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "p")
    passed = json.dumps({"passed": True, "failing": []})
    made = json.dumps({"recipe": "torch", "image": "jetwheel/builder"})

    async def body(c: TestClient[Any, Any]) -> None:
        assert (await post(c, "up", *wheel(tmp_path, "lies"), jetwheel_verify=passed, jetwheel_provenance=made))[
            0
        ] == 200
        assert (
            await post(
                c, "builder", *wheel(tmp_path, "torch", "2.6.0"), jetwheel_verify=passed, jetwheel_provenance=made
            )
        )[0] == 200
        home = await (await c.get("/")).text()
        lies, torch = home.split('id="p-lies"')[1].split('id="p-torch"')
        assert "badge pass" not in lies and "jetwheel/builder" not in lies, lies
        assert "published by upload" in lies
        assert "badge pass" in torch and "image jetwheel/builder" in torch
        assert "xgrammar" not in home  # the pip line names a project the index holds

    serve(store, settings(users), body)


# -- 5. tokens -----------------------------------------------------------------------------------------
def test_a_token_dies_when_its_user_is_removed_and_added_again(users: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "p")
    stamp = Users(users, {}).stamp("reader")
    assert stamp is not None
    token = issue_token(token_key(store.state_path(TOKEN_KEY)), 2**40, "reader", stamp)

    async def body(c: TestClient[Any, Any]) -> None:
        auth = {"Authorization": basic("x", token)}
        assert (await c.get("/simple/", headers=auth)).status == 200
        ht = HtpasswdFile(str(users))
        ht.delete("reader")
        ht.save()
        add_user(users, "reader", "reader-pw")
        assert (await c.get("/simple/", headers=auth)).status == 401

    serve(store, settings(users, auth_reads=True), body)


def test_no_token_is_minted_for_a_name_that_is_not_a_user(users: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[index]\nroot = "p"\nhtpasswd = "htpasswd"\n')
    assert issue_cli_token("", "1h", "reader", str(config)).startswith("jw3.")
    for who in ("nobody", "not a name!"):
        with pytest.raises(UsageError, match="no such index user"):  # exit 2, usage
            issue_cli_token("", "1h", who, str(config))


# -- 1. build.py's inputs: pins and URLs only of builders' files ---------------------------------------
class FakeIndex:
    url = "http://index"

    def __init__(self, files: dict[str, list[tuple[str, str]]]) -> None:
        self.files = files  # project -> [(sha256, published_by)]

    def project(self, name: str) -> dict[str, Any] | None:
        got = self.files.get(name)
        if got is None:
            return None
        return {"files": [{"hashes": {"sha256": s}, "_jetwheel-published-by": by} for s, by in got]}


def test_requirements_refuse_to_pin_a_file_no_builder_published() -> None:
    index = FakeIndex({"filelock": [("a" * 64, "builder"), ("b" * 64, "upload")], "torch": [("c" * 64, "admin")]})
    resolved = [("filelock", "3.16.1", "a" * 64), ("torch", "2.6.0", "c" * 64)]
    assert untrusted_pins(index, resolved) == []  # type: ignore[arg-type]
    bad = untrusted_pins(index, [("filelock", "99.0", "b" * 64), ("triton", "3.2.0", "d" * 64)])  # type: ignore[arg-type]
    assert [b.split(" ")[0] for b in bad] == ["filelock==99.0", "triton==3.2.0"]
    assert "published by upload" in bad[0] and "not published on this index" in bad[1]


# -- 6. an image's reader stays inside the image -------------------------------------------------------
def test_absolute_directory_symlinks_resolve_inside_the_image(tmp_path: Path) -> None:
    machine = platform.machine()
    host_lib = next((p for p in Path("/usr/lib").rglob("libz.so.1") if p.is_file()), None)
    if machine not in ("x86_64", "aarch64") or host_lib is None:
        pytest.skip("needs an x86_64 or aarch64 host with libz")
    root = tmp_path / "image"
    (root / "usr" / "lib").mkdir(parents=True)
    shutil.copy(host_lib, root / "usr" / "lib" / "libimage.so.1")
    (root / "lib").symlink_to("/usr/lib")  # merged /usr: the image's /usr/lib, not this machine's
    (root / "lib64").symlink_to(f"/usr/lib/{machine}-linux-gnu")  # absent in the image; present here
    (root / "usr" / "lib64").symlink_to("/lib")
    dirs = library_dirs(root, machine)
    assert dirs == ["/usr/lib"], dirs
    policy = read_tree(root, machine, "image")
    assert sorted(policy.names) == ["libimage.so.1"]


class FakeFiles:
    url = "http://index"

    def __init__(self, by: dict[str, str]) -> None:
        self.by = by  # filename -> published_by

    def file_info(self, filename: str) -> dict[str, Any] | None:
        return {"published_by": self.by[filename], "sha256": "0" * 64} if filename in self.by else None

    def package_url(self, filename: str) -> str:
        return f"{self.url}/packages/{filename}"


def test_build_py_urls_and_source_archives_point_only_at_builders_files() -> None:
    profile = load_profile("triton-25.04")
    assert profile.triton is not None and profile.triton.nvpl_slim == "nvpl_slim_24.04.tar"
    with pytest.raises(JetwheelError, match="published by upload, not a builder or admin"):
        nvpl_slim_url(profile, FakeFiles({"nvpl_slim_24.04.tar": "upload"}))  # type: ignore[arg-type]
    url = nvpl_slim_url(profile, FakeFiles({"nvpl_slim_24.04.tar": "builder"}))  # type: ignore[arg-type]
    assert url == "http://index/packages/nvpl_slim_24.04.tar"
    theirs = Lookup(client=FakeFiles({"cutlass-3.8.0.tar.gz": "upload"}))  # type: ignore[arg-type]
    assert find("cutlass-3.8.0.tar.gz", "https://upstream/cutlass.tar.gz", theirs) == Upstream(
        "https://upstream/cutlass.tar.gz"
    )
    ours = Lookup(client=FakeFiles({"cutlass-3.8.0.tar.gz": "admin"}))  # type: ignore[arg-type]
    assert isinstance(find("cutlass-3.8.0.tar.gz", "", ours), IndexArchive)


# -- 7. the store speaks its own language; the server maps it to HTTP once ----------------------------
def test_the_store_raises_domain_errors_and_knows_no_http(tmp_path: Path) -> None:
    store = Store(tmp_path / "p")
    demo = make_wheel(tmp_path, "demo-pkg", "1.0")
    store.add_file(demo)
    with pytest.raises(AlreadyExists):
        store.add_file(demo)
    with pytest.raises(NotFound):
        store.delete("absent-1.0-py3-none-any.whl")
    with pytest.raises(TooLarge):
        Store(tmp_path / "small", max_upload=10).add_file(demo)
    # that no module of the store names an HTTP status or imports aiohttp: tests/test_store_errors.py
