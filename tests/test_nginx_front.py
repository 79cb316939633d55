"""The index behind Debian's nginx (`index.serve --nginx`): nginx answers reads from the tree the
store keeps rendered, the app behind it takes uploads and the API."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import USER, Server, free_port, pip_download
from wheelmaker import make_wheel

from jetwheel.index.front import static
from jetwheel.index.server.config import add_user
from jetwheel.index.store.catalog import Catalog
from jetwheel.index.store.store import Store
from jetwheel.workflow.serve import wait_ready

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
PASSWORD = "s3cret-pass"
JSON = "application/vnd.pypi.simple.v1+json"


def get(url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.fixture
def front(tmp_path: Path) -> Iterator[Server]:
    root, ht, config = tmp_path / "packages", tmp_path / "htpasswd", tmp_path / "config.toml"
    if os.geteuid() == 0:  # nginx's workers then run as nobody: the store must be reachable by others
        for d in (tmp_path, *tmp_path.parents):
            d.chmod(d.stat().st_mode | 0o001)
    add_user(ht, USER, PASSWORD)
    config.write_text(f'[index.roles]\n{USER} = "admin"\n')  # the test yanks and deletes
    port = free_port()
    cmd = [sys.executable, "-m", "jetwheel", "index.serve", "--config", str(config), "--root", str(root)]
    cmd += ["--host", "127.0.0.1"]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port), "--htpasswd", str(ht), "--upstream", "", "--workers", "2", "--nginx"]
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc)
    yield Server(url, root, proc, ht)
    proc.terminate()
    proc.wait(20)
    # the front stopped its children and took its tree away
    assert not static.tree(Store(root)).exists()
    assert subprocess.run(["pgrep", "-f", f"nginx -c {root}"], capture_output=True).returncode == 1


def served_by_nginx(headers: dict[str, str]) -> bool:
    """nginx's own ETag for a static file is "<mtime hex>-<size hex>"; the app's is a digest."""
    return re.fullmatch(r'"[0-9a-f]+-[0-9a-f]+"', headers.get("ETag", "")) is not None


def test_reads_come_from_nginx_and_follow_each_upload_yank_and_delete(front: Server, tmp_path: Path) -> None:
    client = front.client(USER, PASSWORD)
    wheel = make_wheel(tmp_path, "front-demo", "1.0")
    client.upload(wheel)  # through nginx to the app
    page = f"{front.url}/simple/front-demo/"
    status, headers, body = get(page, Accept="text/html")
    assert status == 200 and served_by_nginx(headers) and wheel.name in body.decode()
    assert headers["Content-Type"] == "text/html" and headers["Vary"] == "Accept"
    # PEP 691 as pip asks for it, and the PEP 658 metadata file beside the wheel
    accept = f"{JSON}, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"
    status, headers, body = get(page, Accept=accept)
    doc = json.loads(body)
    assert headers["Content-Type"] == JSON and served_by_nginx(headers)
    assert doc["files"][0]["hashes"]["sha256"] == hashlib.sha256(wheel.read_bytes()).hexdigest()
    status, _h, meta = get(f"{front.url}/packages/{wheel.name}.metadata")
    assert status == 200 and hashlib.sha256(meta).hexdigest() == doc["files"][0]["core-metadata"]["sha256"]
    # ETag and Range, by nginx
    etag = get(page, Accept="text/html")[1]["ETag"]
    assert get(page, Accept="text/html", **{"If-None-Match": etag})[0] == 304
    status, headers, part = get(f"{front.url}/packages/{wheel.name}", Range="bytes=10-19")
    assert status == 206 and part == wheel.read_bytes()[10:20] and served_by_nginx(headers)
    # a yank is on the page the moment the call returns, with a new ETag
    client.yank(wheel.name, "broken")
    status, headers, body = get(page, Accept="text/html")
    assert 'data-yanked="broken"' in body.decode() and headers["ETag"] != etag
    # a query only the app can weigh still gets the app's answer
    assert get(page, Accept="application/xml")[0] == 406
    assert json.loads(get(page, Accept=f"text/html;q=0.5, {JSON};q=0.9")[2])["name"] == "front-demo"
    # pip through the front
    r = pip_download(front.simple, "front-demo==1.0", tmp_path / "dl")
    assert r.returncode == 0, r.stderr
    # delete: gone from nginx's tree, the app answers 404 for the project
    req = urllib.request.Request(f"{front.url}/api/files/{wheel.name}", method="DELETE")
    client._open(req).close()
    assert get(page)[0] == 404 and get(f"{front.url}/packages/{wheel.name}")[0] == 404
    assert "front-demo" not in get(f"{front.url}/simple/", Accept=JSON)[2].decode()


def test_readers_never_see_a_torn_page_or_a_link_to_a_missing_file(front: Server, tmp_path: Path) -> None:
    client = front.client(USER, PASSWORD)
    wheels = [make_wheel(tmp_path, "busy-front", f"1.{i}") for i in range(10)]
    client.upload(wheels[0])
    stop = threading.Event()
    seen: list[list[int]] = [[], [], []]
    problems: list[str] = []

    def reader(counts: list[int]) -> None:
        while not stop.is_set():
            body = get(f"{front.url}/simple/busy-front/", Accept=JSON)[2]
            try:
                files = json.loads(body)["files"]
            except ValueError:
                problems.append(f"torn page: {body[-80:]!r}")
                continue
            counts.append(len(files))
            last = files[-1]["filename"]
            if get(f"{front.url}/packages/{last}", Range="bytes=0-3")[2] != b"PK\x03\x04":
                problems.append(f"the page links {last}, which is not served")

    readers = [threading.Thread(target=reader, args=(counts,)) for counts in seen]
    for t in readers:
        t.start()
    try:
        for w in wheels[1:]:
            client.upload(w)
    finally:
        stop.set()
        for t in readers:
            t.join()
    assert problems == []
    # each reader saw the list only grow, and saw it change while the uploads went on
    assert all(counts == sorted(counts) and len(set(counts)) > 1 for counts in seen)
    assert len(json.loads(get(f"{front.url}/simple/busy-front/", Accept=JSON)[2])["files"]) == len(wheels)


def test_a_file_copied_into_the_store_by_hand_reaches_nginx(front: Server, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "by-hand", "2.0")
    shutil.copy(wheel, front.root / wheel.name)
    deadline = time.monotonic() + 10
    # the app shows it at once (it looks at the directory); nginx once the repair rendered it
    while not served_by_nginx(get(f"{front.url}/simple/by-hand/")[1]):
        assert time.monotonic() < deadline, "the repair did not render the hand-copied file"
        time.sleep(0.2)
    status, headers, body = get(f"{front.url}/packages/{wheel.name}")
    assert status == 200 and served_by_nginx(headers) and body == wheel.read_bytes()


def test_a_change_rewrites_only_its_project_and_the_root(tmp_path: Path) -> None:
    store = Store(tmp_path / "packages")
    for name in ("alpha", "beta"):
        store.add_file(make_wheel(tmp_path, name, "1.0"))
    store.on_change(static.follow)
    with store.lock():
        tree = static.sync(store)
    before = {p: p.stat().st_ino for p in tree.rglob("*") if p.is_file()}
    store.add_file(make_wheel(tmp_path, "alpha", "1.1"))
    after = {p: p.stat().st_ino for p in tree.rglob("*") if p.is_file()}
    changed = sorted(str(p.relative_to(tree)) for p in after if before.get(p) != after[p])
    assert changed == [
        "packages/alpha-1.1-py3-none-any.whl",
        "packages/alpha-1.1-py3-none-any.whl.metadata",
        "simple/alpha/index.html",
        "simple/alpha/index.json",
        "simple/alpha/index.v1html",
    ]  # the root page lists the same projects as before: left as it was, its ETag too
    # the same bytes a full export renders
    fresh = tmp_path / "fresh"
    from jetwheel.index.front.export import export

    export(store, fresh)
    for page in ("simple/index.html", "simple/alpha/index.json", "simple/beta/index.html"):
        assert (tree / page).read_bytes() == (fresh / page).read_bytes()
    # the wheel in the tree is the store's file itself, not a copy
    assert os.path.samefile(tree / "packages/alpha-1.1-py3-none-any.whl", store.path("alpha-1.1-py3-none-any.whl"))


def test_a_same_size_rewrite_within_a_second_still_changes_the_etag(tmp_path: Path) -> None:
    store = Store(tmp_path / "packages")
    wheel = make_wheel(tmp_path, "gamma", "1.0")
    store.add_file(wheel)
    store.on_change(static.follow)
    with store.lock():
        tree = static.sync(store)
    page = tree / "simple" / "gamma" / "index.html"
    store.yank(wheel.name, "a")
    first = page.stat()
    store.yank(wheel.name, "b")  # same size, same second
    second = page.stat()
    assert first.st_size == second.st_size and first.st_mtime_ns // 10**9 != second.st_mtime_ns // 10**9


def test_nginx_with_auth_reads_is_refused_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "jetwheel", "index.serve", "--root", str(tmp_path), "--auth-reads", "--nginx"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "jetwheel: error: --nginx serves reads without a login; drop --auth-reads or serve without --nginx"
    ]


def test_the_store_tells_its_observers_of_each_change_under_its_lock(tmp_path: Path) -> None:
    store = Store(tmp_path / "packages")
    seen: list[tuple[str, bool]] = []

    def observer(changed: Catalog, filename: str) -> None:
        with pytest.raises(BlockingIOError), open(changed.state_path("lock"), "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the store holds it: this would wait
        seen.append((filename, filename in changed.files()))

    store.on_change(observer)
    wheel = make_wheel(tmp_path, "delta", "1.0")
    store.add_file(wheel)
    store.yank(wheel.name)
    store.delete(wheel.name)
    assert seen == [(wheel.name, True), (wheel.name, True), (wheel.name, False)]
    Store(store.root).add_file(make_wheel(tmp_path, "delta", "2.0"))  # another store object: not observed
    assert len(seen) == 3
