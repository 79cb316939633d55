"""The docker/ images, built for real with podman from the local debootstrap base image (no
registry here), and the index image run and used."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import PASSWORD, USER, free_port, pip_download
from wheelmaker import make_wheel

from jetwheel.index.client.client import IndexClient
from jetwheel.index.server.config import add_user
from jetwheel.runners.baseimage import ensure_base_image

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
CA = "/etc/ssl/certs/ca-certificates.crt"


def podman_build(*args: str) -> subprocess.CompletedProcess[str]:
    secret = ["--secret", f"id=ca,src={CA}"] if os.path.exists(CA) else []
    return subprocess.run(["podman", "build", "--network=host", *secret, *args], capture_output=True, text=True)


def test_builder_image_builds_from_a_local_base() -> None:
    base = ensure_base_image()
    done = podman_build(
        "--build-arg",
        f"BASE_IMAGE={base}",
        "--build-arg",
        "PYTHON_SOURCE=system",
        "-t",
        "localhost/jetwheel-builder:test",
        str(ROOT / "docker" / "builder"),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = subprocess.run(
        [
            "podman",
            "run",
            "--rm",
            "localhost/jetwheel-builder:test",
            "sh",
            "-c",
            "id -un build && ccache --version | head -1 && cat /etc/pip.conf",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "build" in out and "ccache version" in out and "index-url = http://jetson-index.lan:8080/simple/" in out


def test_index_image_builds_runs_and_serves(tmp_path: Path) -> None:
    base = ensure_base_image()
    done = podman_build(
        "--build-arg",
        f"BASE_IMAGE={base}",
        "-t",
        "localhost/jetwheel-index:test",
        "-f",
        str(ROOT / "docker" / "index" / "Containerfile"),
        str(ROOT),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data, ht = tmp_path / "data", tmp_path / "htpasswd"
    data.mkdir()
    os.chown(data, 10001, 10001)  # the image's user (docker/index/Containerfile): it must own the store
    add_user(ht, USER, PASSWORD)
    port = free_port()
    cid = subprocess.run(
        [
            "podman",
            "run",
            "-d",
            "--network=host",
            "-v",
            f"{data}:/data",
            "-v",
            f"{ht}:/run/secrets/htpasswd:ro",
            "-e",
            f"PORT={port}",
            "localhost/jetwheel-index:test",
            "--upstream",
            "",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2).close()
                break
            except OSError:
                assert time.time() < deadline, subprocess.run(
                    ["podman", "logs", cid], capture_output=True, text=True
                ).stderr[-2000:]
                time.sleep(0.5)
        IndexClient(url, USER, PASSWORD).upload(make_wheel(tmp_path, "from-image", "1.0"))
        assert (data / "from_image-1.0-py3-none-any.whl").exists()  # the volume holds the store
        r = pip_download(f"{url}/simple/", "from-image", str(tmp_path / "dl"))
        assert r.returncode == 0, r.stderr
    finally:
        subprocess.run(["podman", "rm", "-f", cid], capture_output=True)
