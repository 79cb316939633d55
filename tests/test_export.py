"""index.export: the static tree served by Debian's nginx and by an S3 API server (moto), each
installed from with pip."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import Server, free_port, pip_download
from wheelmaker import make_wheel

from jetwheel.index.front.export import export, place, upload_to_bucket
from jetwheel.index.store.store import Store


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


def exported(tmp: Path) -> Path:
    store = Store(tmp / "store")
    wheels = tmp / "wheels"
    wheels.mkdir()
    store.add_file(make_wheel(wheels, "static-pkg", "1.0", requires=("static-dep",)))
    store.add_file(make_wheel(wheels, "static-dep", "2.0"))
    dest = tmp / "export"
    export(store, dest)
    return dest


def pip_installs(index: str, tmp: Path) -> None:
    r = pip_download(index, "static-pkg", tmp / "dl", deps=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(p.name for p in (tmp / "dl").iterdir()) == [
        "static_dep-2.0-py3-none-any.whl",
        "static_pkg-1.0-py3-none-any.whl",
    ]


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_nginx_serves_the_export_with_content_negotiation(tmp_path: Path) -> None:
    dest = exported(tmp_path)
    port = free_port()
    export(Store(tmp_path / "store"), dest, port)
    conf = tmp_path / "main.conf"
    conf.write_text(
        f"user root; daemon off; pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log;\n"
        f"events {{}}\nhttp {{ access_log off; include /etc/nginx/mime.types;\n"
        f"client_body_temp_path {tmp_path}; proxy_temp_path {tmp_path}; fastcgi_temp_path {tmp_path};\n"
        f"uwsgi_temp_path {tmp_path}; scgi_temp_path {tmp_path};\ninclude {dest}/nginx.conf; }}\n"
    )
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp_path)])
    try:
        wait_port(port)
        base = f"http://127.0.0.1:{port}"
        req = urllib.request.Request(
            f"{base}/simple/static-pkg/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
        )
        with urllib.request.urlopen(req) as r:
            assert r.headers["Content-Type"] == "application/vnd.pypi.simple.v1+json"
            assert b'"core-metadata"' in r.read()
        pip_installs(f"{base}/simple/", tmp_path)
    finally:
        proc.terminate()
        proc.wait(10)


def test_s3_bucket_serves_the_export(tmp_path: Path) -> None:
    pytest.importorskip("boto3")
    dest = exported(tmp_path)
    port = free_port()
    env = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        endpoint = f"http://127.0.0.1:{port}"
        os.environ.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
        import boto3

        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="wheels")
        assert upload_to_bucket(dest, "wheels", endpoint, public_read=True) > 6
        pip_installs(f"{endpoint}/wheels/simple/", tmp_path)
    finally:
        proc.terminate()
        proc.wait(10)


def test_export_cli(server: Server, tmp_path: Path) -> None:
    server.client().upload(make_wheel(tmp_path, "cli-pkg", "1.0"))
    r = subprocess.run(
        [sys.executable, "-m", "jetwheel", "index.export", str(tmp_path / "out"), "--root", str(server.root)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "simple" / "cli-pkg" / "index.html").exists()
    assert (tmp_path / "out" / "packages" / "cli_pkg-1.0-py3-none-any.whl.metadata").exists()


def test_place_replaces_a_file_of_the_same_size_that_is_not_the_source(tmp_path: Path) -> None:
    # an admin's overwrite of a wheel by one of the same size: the next export must carry the new bytes
    src, dst = tmp_path / "a.whl", tmp_path / "b.whl"
    src.write_bytes(b"new")
    dst.write_bytes(b"old")
    place(src, dst)
    assert dst.read_bytes() == b"new" and os.path.samefile(src, dst)  # a hard link: no copy


def test_place_copies_across_file_systems_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def cross_device(src: object, dst: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    src, dst = tmp_path / "a.whl", tmp_path / "b.whl"
    src.write_bytes(b"wheel")
    place(src, dst)
    copied = dst.stat().st_ino
    assert dst.read_bytes() == b"wheel" and not os.path.samefile(src, dst)
    place(src, dst)  # current (same size and mtime, kept by the copy): not copied again
    assert dst.stat().st_ino == copied
    src.write_bytes(b"other")  # same size, a later mtime (set: file times tick coarser than this test runs)
    later = src.stat().st_mtime_ns + 10**9
    os.utime(src, ns=(later, later))
    place(src, dst)
    assert dst.read_bytes() == b"other"
