"""The door's tasks that had no test of their own, through the real door in-process: each parses,
calls its workflow, and prints what it returns (index.upload-artifact, index.yank, status,
policy.from-image, runtime.tarball --upload)."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest
from conftest import PASSWORD, USER, Server
from wheelmaker import make_wheel

from jetwheel.cli import program
from jetwheel.verify.policy import Policy, load, save

BUILDER = "localhost/jetwheel-builder:bookworm"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    """The task's stdout lines; it must exit 0 (a failure raises SystemExit)."""
    program().run(["jetwheel", *argv])
    return capsys.readouterr().out.splitlines()


@pytest.fixture
def logged_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JETWHEEL_INDEX_USER", USER)
    monkeypatch.setenv("JETWHEEL_INDEX_PASSWORD", PASSWORD)


def test_artifact_upload_yank_and_status(
    server: Server, logged_in: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    artifact = tmp_path / "nvpl_slim_24.04.tar"
    artifact.write_bytes(b"not really a tar")
    assert run(capsys, "index.upload-artifact", str(artifact), "--index", server.url) == [
        f"{server.url}/packages/nvpl_slim_24.04.tar"
    ]
    with urllib.request.urlopen(f"{server.url}/packages/nvpl_slim_24.04.tar") as r:
        assert r.read() == b"not really a tar"
    wheel = make_wheel(tmp_path, "demo-pkg", "1.0")
    server.client().upload(wheel)
    assert run(capsys, "index.yank", wheel.name, "--reason", "broken", "--index", server.url) == [
        f"yanked {wheel.name}"
    ]
    doc = json.loads("\n".join(run(capsys, "status", "--index", server.url, "--json")))
    assert doc["projects"] == 1 and doc["yanked"] == 1
    summary = run(capsys, "status", "--index", server.url)
    assert summary[0].startswith("1 projects, 2 files") and summary[1].endswith("; 1 yanked")


@pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed")
def test_policy_from_image_then_the_runtime_tarball_of_what_it_lacks_uploaded(
    server: Server, logged_in: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jetwheel.runners.baseimage import ensure_base_image

    ensure_base_image()
    policy = tmp_path / "bookworm.policy.json"
    [said] = run(capsys, "policy.from-image", BUILDER, "--out", str(policy))
    full = load(policy)
    assert said.startswith(f"{policy}: {len(full.names)} library names") and full.names
    # a runtime without zlib, and a wheel whose extension needs libz.so.1: the tarball carries zlib
    nozlib = tmp_path / "nozlib.policy.json"
    save(
        Policy(full.sources, full.machine, full.files, {n: p for n, p in full.names.items() if "libz." not in n}),
        nozlib,
    )
    src = tmp_path / "ext.c"
    src.write_text("int deflate(void); int f(void){return deflate();}\n")
    so = tmp_path / "ext.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(so), str(src), "-Wl,--no-as-needed", "-lz"], check=True)
    wheel = make_wheel(tmp_path, "okpkg", "1.0", extra={"okpkg/_ext.so": so.read_bytes()})
    out = tmp_path / "runtime.tar"
    argv = [
        "runtime.tarball",
        "--paths",
        str(wheel),
        "--builder",
        BUILDER,
        "--policy",
        str(nozlib),
        "--profile",
        "mini",
    ]
    lines = run(capsys, *argv, "--out", str(out), "--index", server.url, "--upload")
    assert lines[0].startswith("  lib/libz.so.1  (zlib1g: ") and lines[1].startswith(f"{out}  sha256 ")
    assert lines[2] == f"{server.url}/packages/runtime.tar"
    with urllib.request.urlopen(lines[2]) as r:
        assert r.read() == out.read_bytes()
