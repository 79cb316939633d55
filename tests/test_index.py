"""The index as a process against real clients (twine, pip, uv, pypiserver) on 127.0.0.1; cut and
killed uploads. The hostile-input table is in test_hostile.py (in-process)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    PASSWORD,
    USER,
    Server,
    free_port,
    install_and_run,
    pip_download,
    pip_env,
    start_server,
    stop_server,
)
from uploads import multipart, upload_fields
from wheelmaker import make_wheel

AUTH = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def tree(root: Path) -> dict[str, bytes]:
    """Everything under the store, derived data included, except the lock file."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.name != "lock"
    }


def post(
    url: str, body: bytes, auth: str | None = AUTH, ctype: str = "multipart/form-data; boundary=xXx"
) -> tuple[int, str]:
    headers = {"Content-Type": ctype}
    if auth:
        headers["Authorization"] = auth
    req = urllib.request.Request(url + "/", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def get(url: str, accept: str = "", headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers={**({"Accept": accept} if accept else {}), **(headers or {})})

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a: object, **k: object) -> None:
            return None

    try:
        with urllib.request.build_opener(NoRedirect).open(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


# -- hostile uploads ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("hostile") / "packages", "--max-upload-mb", "1")
    good = make_wheel(tmp_path_factory.mktemp("w"), "existing", "1.0")
    s.client(USER, PASSWORD).upload(good)
    yield s
    stop_server(s)


def test_truncated_body_is_rejected_and_leaves_nothing(small_server: Server, tmp_path: Path) -> None:
    data = make_wheel(tmp_path, "cut-pkg", "1.0", payload=200_000).read_bytes()
    body = multipart(upload_fields(data, "cut-pkg"), "cut_pkg-1.0-py3-none-any.whl", data)
    before = tree(small_server.root)
    host, port = small_server.url.split("//")[1].split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(
            f"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH}\r\nContent-Type: multipart/form-data; "
            f"boundary=xXx\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body[: len(body) // 2]
        )
    time.sleep(0.5)
    assert tree(small_server.root) == before


# -- real clients ------------------------------------------------------------------------------------
def test_twine_upload_then_pip_install_and_download(server: Server, tmp_path: Path) -> None:
    whl = make_wheel(tmp_path, "hello-jet", "0.3", payload=10)
    up = subprocess.run(
        [
            sys.executable,
            "-m",
            "twine",
            "upload",
            "--non-interactive",
            "--disable-progress-bar",
            "--repository-url",
            server.url + "/",
            "-u",
            USER,
            "-p",
            PASSWORD,
            str(whl),
        ],
        capture_output=True,
        text=True,
    )
    assert up.returncode == 0, up.stdout + up.stderr
    code = "import hello_jet; print(hello_jet.VALUE)"
    assert install_and_run(server.simple, "hello-jet==0.3", code, tmp_path / "venv").strip() == "0.3"
    dl = tmp_path / "dl"
    assert pip_download(server.simple, "hello-jet", dl).returncode == 0
    assert (dl / whl.name).read_bytes() == whl.read_bytes()


def test_pip_dry_run_uses_pep658_metadata_not_the_wheel(server: Server, tmp_path: Path) -> None:
    whl = make_wheel(tmp_path, "meta-only", "1.0", payload=500_000, requires=("meta-dep>=1",))
    dep = make_wheel(tmp_path, "meta-dep", "1.2")
    for w in (whl, dep):
        server.client().upload(w)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "-v",
            "--report",
            str(tmp_path / "r.json"),
            "--index-url",
            server.simple,
            "meta-only",
        ],
        capture_output=True,
        text=True,
        env=pip_env(),
    )
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert sorted(i["metadata"]["name"] for i in report["install"]) == ["meta-dep", "meta-only"]
    assert "meta_only-1.0-py3-none-any.whl.metadata" in r.stdout
    assert "Downloading meta_only-1.0-py3-none-any.whl.metadata" in r.stdout
    assert "Downloading meta_only-1.0-py3-none-any.whl (" not in r.stdout  # the 500 kB wheel itself


def test_uv_installs_from_the_index(server: Server, tmp_path: Path) -> None:
    whl = make_wheel(tmp_path, "uv-pkg", "2.0")
    server.client().upload(whl)
    env = dict(pip_env(), UV_NO_CONFIG="1", UV_CACHE_DIR=str(tmp_path / "uvcache"))
    subprocess.run(
        ["uv", "venv", str(tmp_path / "v"), "--python", sys.executable], check=True, env=env, capture_output=True
    )
    r = subprocess.run(
        [
            "uv",
            "pip",
            "install",
            "--python",
            str(tmp_path / "v" / "bin" / "python"),
            "--index-url",
            server.simple,
            "uv-pkg==2.0",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert "uv-pkg==2.0" in r.stderr


def test_pypiserver_serves_the_same_directory(server: Server, tmp_path: Path) -> None:
    whl = make_wheel(tmp_path, "shared-dir", "1.1")
    server.client().upload(whl)
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pypiserver",
            "run",
            "-p",
            str(port),
            "-i",
            "127.0.0.1",
            "-a",
            ".",
            "-P",
            ".",
            str(server.root),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 20
        status, body = 0, b""
        while time.time() < deadline and status != 200:
            try:
                status, _h, body = get(f"http://127.0.0.1:{port}/simple/shared-dir/")
            except urllib.error.URLError:
                time.sleep(0.2)
        assert status == 200 and whl.name.encode() in body
        assert b".jetwheel" not in get(f"http://127.0.0.1:{port}/simple/")[2]
    finally:
        proc.terminate()
        proc.wait(10)


def test_pep691_json_and_pep503_html_by_content_negotiation(server: Server, tmp_path: Path) -> None:
    whl = make_wheel(tmp_path, "Neg.Pkg", "1.0")
    server.client().upload(whl)
    status, headers, body = get(server.simple + "neg-pkg/", accept="application/vnd.pypi.simple.v1+json")
    assert status == 200 and headers["Content-Type"].startswith("application/vnd.pypi.simple.v1+json")
    doc = json.loads(body)
    f = doc["files"][0]
    assert doc["versions"] == ["1.0"] and f["hashes"]["sha256"] == hashlib.sha256(whl.read_bytes()).hexdigest()
    assert f["size"] == whl.stat().st_size and f["core-metadata"] and f["upload-time"].endswith("Z")
    status, headers, body = get(server.simple + "neg-pkg/", accept="text/html")
    assert status == 200 and b'data-core-metadata="sha256=' in body and b"#sha256=" in body
    assert b'data-requires-python="&gt;=3.8"' in body
    # PEP 503 normalization redirects
    status, headers, _ = get(server.simple + "Neg.Pkg/")
    assert status == 301 and headers["Location"] == "/simple/neg-pkg/"
    # ETag: the page is not sent again when unchanged
    etag = get(server.simple + "neg-pkg/")[1]["ETag"]
    assert get(server.simple + "neg-pkg/", headers={"If-None-Match": etag})[0] == 304
    # the metadata file matches its advertised hash; Range requests work on files
    meta = get(server.url + f"/packages/{whl.name}.metadata")[2]
    assert hashlib.sha256(meta).hexdigest() == f["core-metadata"]["sha256"]
    status, _h, part = get(server.url + f"/packages/{whl.name}", headers={"Range": "bytes=0-3"})
    assert status == 206 and part == b"PK\x03\x04"


def test_yanked_file_is_skipped_unless_pinned(server: Server, tmp_path: Path) -> None:
    for v in ("1.0", "1.1"):
        server.client().upload(make_wheel(tmp_path, "yank-me", v))
    server.client().yank("yank_me-1.1-py3-none-any.whl", "broken build")
    body = get(server.simple + "yank-me/")[2]
    assert b'data-yanked="broken build"' in body
    r = pip_download(server.simple, "yank-me", str(tmp_path / "d"))
    assert r.returncode == 0 and (tmp_path / "d" / "yank_me-1.0-py3-none-any.whl").exists()
    server.client().yank("yank_me-1.1-py3-none-any.whl", undo=True)
    assert b"data-yanked" not in get(server.simple + "yank-me/")[2]


def test_owned_name_never_falls_back_to_upstream(server: Server, tmp_path: Path) -> None:
    # torch is a recipe: with or without a file of it, PyPI's torch is never offered
    status, headers, body = get(server.simple + "torch/")
    assert status == 404 and "Location" not in headers and b"never taken from upstream" in body
    server.client().upload(make_wheel(tmp_path, "torch", "0.0.1"))
    r = pip_download(server.simple, "torch==2.6.0", str(tmp_path / "d"))
    assert r.returncode != 0 and "No matching distribution found for torch==2.6.0" in r.stderr
    # a name stored here but built by no recipe is owned too
    server.client().upload(make_wheel(tmp_path, "six", "0.0.1"))
    assert get(server.simple + "six/")[0] == 200


def test_unowned_name_redirects_to_upstream(server: Server) -> None:
    status, headers, _ = get(server.simple + "requests/")
    assert status == 302 and headers["Location"] == "https://pypi.org/simple/requests/"


def test_air_gapped_index_has_no_fallback(tmp_path: Path) -> None:
    s = start_server(tmp_path / "p", upstream="")
    try:
        assert get(s.simple + "requests/")[0] == 404
    finally:
        stop_server(s)


def test_kill_9_during_upload_leaves_no_partial_file_and_restarts_clean(tmp_path: Path) -> None:
    s = start_server(tmp_path / "packages")
    data = make_wheel(tmp_path, "half-sent", "1.0", payload=3_000_000).read_bytes()
    body = multipart(upload_fields(data, "half-sent"), "half_sent-1.0-py3-none-any.whl", data)
    host, port = s.url.split("//")[1].split(":")
    conn = socket.create_connection((host, int(port)))
    conn.sendall(
        f"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH}\r\nContent-Type: multipart/form-data; "
        f"boundary=xXx\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body[: len(body) // 2]
    )
    deadline = time.monotonic() + 20  # the password check (bcrypt) comes first; the machine may be busy
    while not list((s.root / ".jetwheel" / "tmp").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list((s.root / ".jetwheel" / "tmp").iterdir()), "the upload should be streaming to staging"
    os.kill(s.proc.pid, signal.SIGKILL)
    s.proc.wait()
    conn.close()
    assert not (s.root / "half_sent-1.0-py3-none-any.whl").exists()
    s2 = start_server(s.root)
    try:
        assert list((s.root / ".jetwheel" / "tmp").iterdir()) == []
        assert b"half-sent" not in get(s2.simple)[2]
    finally:
        stop_server(s2)


def test_concurrent_uploaders_and_readers_see_no_5xx_and_no_torn_page(server: Server, tmp_path: Path) -> None:
    wheels = [make_wheel(tmp_path, "busy-pkg", f"1.{i}", payload=20_000) for i in range(20)]
    errors: list[str] = []
    done = threading.Event()

    def upload(w: Path) -> None:
        try:
            server.client().upload(w)
        except Exception as e:
            errors.append(f"upload {w.name}: {e}")

    def read() -> None:
        while not done.is_set():
            status, _h, body = get(server.simple + "busy-pkg/", accept="application/vnd.pypi.simple.v1+json")
            if status >= 500:
                errors.append(f"read: {status}")
            elif status == 200:
                for f in json.loads(body)["files"]:  # every listed file is whole
                    if f["size"] != (server.root / f["filename"]).stat().st_size:
                        errors.append(f"torn: {f['filename']}")

    readers = [threading.Thread(target=read) for _ in range(4)]
    for t in readers:
        t.start()
    ups = [threading.Thread(target=upload, args=(w,)) for w in wheels]
    for t in ups:
        t.start()
    for t in ups:
        t.join()
    done.set()
    for t in readers:
        t.join()
    assert errors == []
    assert (
        len(json.loads(get(server.simple + "busy-pkg/", accept="application/vnd.pypi.simple.v1+json")[2])["files"])
        == 20
    )


def test_mirror_pulls_only_names_we_do_not_own_for_the_target(server: Server, tmp_path: Path) -> None:
    server.client().upload(make_wheel(tmp_path, "torch", "2.6.0", tag="py3-none-any"))
    req = tmp_path / "req.txt"
    req.write_text("six==1.16.0\ntorch==2.6.0\n")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "jetwheel",
            "index.mirror",
            "-r",
            str(req),
            "--platform",
            "linux_aarch64",
            "--python-version",
            "3.12",
            "--index",
            server.url,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "JETWHEEL_INDEX_USER": USER, "JETWHEEL_INDEX_PASSWORD": PASSWORD},
    )
    assert r.returncode == 0, r.stderr
    assert "six-1.16.0-py2.py3-none-any.whl" in r.stdout
    assert sorted(p.name for p in server.root.glob("*.whl")) == [
        "six-1.16.0-py2.py3-none-any.whl",
        "torch-2.6.0-py3-none-any.whl",
    ]
    # the mirrored file now serves an air-gapped index on the same directory
    gapped = start_server(server.root, upstream="")
    try:
        status, _h, body = get(gapped.simple + "six/")
        assert status == 200 and b"six-1.16.0-py2.py3-none-any.whl" in body
    finally:
        stop_server(gapped)


def test_slow_headers_and_idle_connections_are_closed_and_connections_are_capped(tmp_path: Path) -> None:
    s = start_server(tmp_path / "packages", "--client-timeout", "2", "--max-connections", "20", "--workers", "1")
    host, port = s.url.split("//")[1].split(":")
    try:
        idle = [socket.create_connection((host, int(port))) for _ in range(19)]
        slow = socket.create_connection((host, int(port)))
        slow.sendall(b"GET /simple/ HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        over = socket.create_connection((host, int(port)))
        over.settimeout(5)
        assert over.recv(100).startswith(b"HTTP/1.1 503")  # the 21st: told to come back, not left hanging
        time.sleep(3)
        for conn in (*idle, slow):  # each closed by the server: a read sees EOF
            conn.settimeout(5)
            assert conn.recv(100) == b"", "still open"
        assert get(s.url + "/health")[0] == 200
    finally:
        stop_server(s)


def test_the_client_reports_each_transfers_bytes_to_the_progress_it_is_given(server: Server, tmp_path: Path) -> None:
    whl = make_wheel(tmp_path, "progress-jet", "1.0")
    client = server.client()
    seen: list[tuple[str, int, int]] = []
    client.upload(whl, progress=lambda what, done, size: seen.append((what, done, size)))
    client.download(whl.name, tmp_path / "dl", progress=lambda what, done, size: seen.append((what, done, size)))
    client.download(whl.name, tmp_path / "quiet")  # no progress asked: none reported, nothing set on the client
    size = whl.stat().st_size
    ups = [s for s in seen if s[0] == f"uploading {whl.name}"]
    downs = [s for s in seen if s[0] == f"downloading {whl.name}"]
    assert len(ups) + len(downs) == len(seen) and ups[-1][1:] == (size, size) and downs[-1][1:] == (size, size)
