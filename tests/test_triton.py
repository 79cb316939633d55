"""Triton's build.py integration: the requirements secret and the command are derived from the
profile (goldens), triton.check against a live index, and a podman build of the stand-in for
Triton's vLLM Dockerfile step."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import Server, start_server, stop_server
from shared_sources import SHARED
from wheelmaker import make_wheel

from jetwheel.errors import JetwheelError
from jetwheel.model.recipe import load_profile
from jetwheel.model.stepsource import StepSource
from jetwheel.sources.archives import archive_name
from jetwheel.sources.fetch import Lookup, fetch_source
from jetwheel.triton.buildpy import build_command, check, requirements, smoke_check
from jetwheel.triton.smoke import fix_for

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
DATA = Path(__file__).parent / "data"
HERE = Path(__file__).parent
# shared/sources/README.md: triton-inference-server/server r25.04 at d79c4f11 (build.py, no qa/)
SERVER = StepSource(
    "url",
    url="https://github.com/triton-inference-server/server/archive/d79c4f11ed08572571b2eac99e0dac268e38cf9b.tar.gz",
    sha256="4693369652fdb649627db1eeb351f711eff52fee064587aebf182bbcbf9acb89",
)
BUILDPY_VENV = Path.home() / ".cache" / "jetwheel" / "buildpy-venv"


def test_requirements_and_command_match_the_goldens() -> None:
    profile = load_profile("triton-25.04", RECIPES)
    assert requirements(profile) == (DATA / "triton-25.04.requirements.txt").read_text()
    cmd = build_command(
        profile,
        "http://jetson-index.lan:8080",
        "http://jetson-index.lan:8080/packages/pytorch_triton-3.2.0+jp62.cu126-cp312-cp312-manylinux_2_35_aarch64.whl",
        "http://jetson-index.lan:8080/packages/nvpl_slim_24.04.tar",
    )
    assert cmd.render() + "\n" == (DATA / "triton-25.04.command.txt").read_text()


def test_command_follows_the_profile(tmp_path: Path) -> None:
    shutil.copytree(RECIPES / "profiles", tmp_path / "profiles")
    p = tmp_path / "profiles" / "triton-25.04.toml"
    p.write_text(
        p.read_text().replace('release = "r25.04"', 'release = "r25.05"').replace('vllm = "0.8.1"', 'vllm = "0.8.4"')
    )
    profile = load_profile("triton-25.04", tmp_path)
    argv = build_command(profile, "http://x:1", "http://x:1/packages/w.whl", "").argv
    assert "--backend=vllm:r25.05" in argv and "nvpl_slim_url" not in argv
    assert "vllm==0.8.4" in requirements(profile)


def test_cli_prints_a_pasteable_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "jetwheel", "triton.command", "--index-url", "http://jetson-index.lan:8080"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith("python3 build.py") and "--build-secret build_public_vllm false" in out
    assert "--build-secret vllm_index_url http://jetson-index.lan:8080/simple/" in out


def nvpl_tarball(dest: Path) -> Path:
    """A tarball with NVPL slim's layout (nvpl_slim_24.04/{lib,include}); the real one is NVIDIA's."""
    path = dest / "nvpl_slim_24.04.tar"
    with tarfile.open(path, "w") as tf:
        for name, data in (
            ("nvpl_slim_24.04/lib/libnvpl_stub.txt", b"stub\n"),
            ("nvpl_slim_24.04/include/nvpl_stub.h", b"/* stub */\n"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def triton_index(tmp_path: Path, stack_wheels: dict[str, Path]) -> Iterator[Server]:
    """A live index with the mini stack, a pytorch-triton wheel and the NVPL tarball."""
    s = start_server(tmp_path / "packages")
    client = s.client()
    for w in stack_wheels.values():
        client.upload(w)
    client.upload(make_wheel(tmp_path, "pytorch-triton", "3.2.0", tag="py3-none-any"))
    client.upload(nvpl_tarball(tmp_path), artifact=True)
    yield s
    stop_server(s)


def test_check_passes_then_names_the_missing_piece(triton_index: Server) -> None:
    profile = load_profile("triton-mini", RECIPES)
    report = check(profile, triton_index.client())
    assert report.passed, report.to_json()
    assert "mini-cuda==0.1.0" in report.facts["requirements"]
    triton_index.client().delete(next(p.name for p in triton_index.root.glob("mini_vision-*.whl")))
    triton_index.client().delete("nvpl_slim_24.04.tar")
    report = check(profile, triton_index.client())
    assert report.failing_checks() == ["nvpl_slim_url", "requirements"]
    details = " ".join(f.detail for f in report.findings)
    assert "mini-vision==0.1.0: no cp3" in details and "HTTP 404" in details


@pytest.mark.slow
def test_standin_for_tritons_vllm_step_builds_with_podman(triton_index: Server, tmp_path: Path) -> None:
    from jetwheel.runners.baseimage import ensure_base_image

    ensure_base_image()
    profile = load_profile("triton-mini", RECIPES)
    req = tmp_path / "req.txt"
    req.write_text(requirements(profile))
    client = triton_index.client()
    triton_url = f"{client.url}/packages/pytorch_triton-3.2.0-py3-none-any.whl"

    def build() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "podman",
                "build",
                "--network=host",
                "--no-cache",
                "--secret",
                f"id=req,src={req}",
                "--build-arg",
                "BUILD_PUBLIC_VLLM=false",
                "--build-arg",
                f"VLLM_INDEX_URL={client.simple_url}",
                "--build-arg",
                f"PYTORCH_TRITON_URL={triton_url}",
                "--build-arg",
                f"NVPL_SLIM_URL={client.url}/packages/nvpl_slim_24.04.tar",
                "-t",
                "jetwheel-triton-standin",
                "-f",
                str(HERE / "triton" / "Containerfile"),
                str(HERE / "triton"),
            ],
            capture_output=True,
            text=True,
        )

    ok = build()
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
    assert "stack ok 2.0" in ok.stdout + ok.stderr
    # the smoke test inside the built image, with triton-mini's module names ([triton.smoke]): ~3 s
    assert [o.line() for o in smoke_check(profile, "jetwheel-triton-standin")] == [
        "ok    import mini_torch",
        "ok    import mini_vision",
        "ok    import mini_cuda",
        "ok    extension mini_cuda._C",
        "ok    lookup mini_torch.has_op('mini_vision::nms')",
    ]
    client.delete(next(p.name for p in triton_index.root.glob("mini_torch-*.whl")))
    broken = build()
    assert broken.returncode != 0
    assert "No matching distribution found for mini-torch==1.0.0" in broken.stdout + broken.stderr


def test_require_hashes_pins_the_closure_with_the_index_hashes(triton_index: Server) -> None:
    import hashlib

    text = requirements(load_profile("triton-mini", RECIPES), triton_index.client(), require_hashes=True)
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert [ln.split("==")[0] for ln in lines] == ["mini-cuda", "mini-torch", "mini-vision"]
    for ln in lines:
        name = ln.split("==")[0].replace("-", "_")
        wheel = next(triton_index.root.glob(f"{name}-*.whl"))
        assert ln.endswith(f"--hash=sha256:{hashlib.sha256(wheel.read_bytes()).hexdigest()}")


def buildpy_python() -> Path:
    """A venv with what build.py imports from PyPI (distro, requests), made once and cached."""
    py = BUILDPY_VENV / "bin" / "python"
    if not py.is_file():
        from conftest import make_venv, pip_env

        make_venv(BUILDPY_VENV)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "distro", "requests"], check=True, env=pip_env())
    return py


@pytest.mark.real
def test_real_buildpy_dryrun_starts_from_igpu_min_and_installs_from_our_index(tmp_path: Path) -> None:
    """build.py r25.04 itself, run with --dryrun on our command line, writes a Dockerfile that starts
    from igpu-min and runs the vLLM step with our URLs (costs ~5 s, ~20 s the first time: the venv)."""
    local = tmp_path / "sources"
    local.mkdir()
    (local / archive_name("triton-server", "r25.04")).symlink_to(SHARED / "server-r25.04.tar.gz")
    server = fetch_source("triton-server", "r25.04", SERVER, tmp_path / "server", Lookup(local)).tree
    profile = load_profile("triton-25.04", RECIPES)
    (server / "jetwheel-requirements.txt").write_text(requirements(profile))
    index = "http://jetson-index.lan:8080"
    cmd = build_command(
        profile,
        index,
        f"{index}/packages/pytorch_triton-3.2.0-cp312-cp312-linux_aarch64.whl",
        f"{index}/packages/nvpl_slim_24.04.tar",
    )
    argv = [str(buildpy_python()), *cmd.argv[1:], "--dryrun"]
    done = subprocess.run(argv, cwd=server, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    dockerfile = (server / "build" / "Dockerfile").read_text()
    lines = [ln.strip() for ln in dockerfile.splitlines()]
    igpu = "nvcr.io/nvidia/tritonserver:25.04-py3-igpu-min"
    assert f"ARG BASE_IMAGE={igpu}" in lines and [ln for ln in lines if ln.startswith("FROM")] == ["FROM ${BASE_IMAGE}"]
    assert "py3-min" not in dockerfile.replace(igpu, "")
    # the vLLM step: NVPL tarball on aarch64, our requirements as the `req` secret, pytorch-triton by URL
    assert 'elif [ "$(uname -m)" = "aarch64" ]; then \\' in lines
    assert "wget -O nvpl_slim_24.04.tar $NVPL_SLIM_URL && \\" in lines
    assert "cp -r nvpl_slim_24.04/lib/* /usr/local/lib && \\" in lines
    assert "RUN --mount=type=secret,id=req,target=/run/secrets/requirements \\" in lines
    assert any("--index-url $VLLM_INDEX_URL -r /run/secrets/requirements" in ln for ln in lines)
    assert "&& wget $PYTORCH_TRITON_URL \\" in lines
    assert "&& pip install --no-cache-dir /tmp/pytorch_triton-*.whl \\" in lines
    # only `req` is a secret: the URLs and the flag are plain build arguments (in the image history)
    script = (server / "build" / "docker_build").read_text()
    assert "--secret id=req,src=jetwheel-requirements.txt" in script
    for arg in (f"VLLM_INDEX_URL={index}/simple/", "BUILD_PUBLIC_VLLM=false", f"NVPL_SLIM_URL={index}/packages/"):
        assert f"--build-arg {arg}" in script
    assert "apt-get install -y datacenter-gpu-manager" in dockerfile and "ubuntu2404/sbsa" in dockerfile


@pytest.mark.slow
def test_smoke_check_names_each_failure_with_its_fix_one_line_each() -> None:
    """In an image without the stack (the local builder image), every step fails, each on one line
    with its fix, and the exit code is 1 (~3 s)."""
    from jetwheel.runners.baseimage import ensure_base_image

    image = ensure_base_image()
    done = subprocess.run(
        [sys.executable, "-m", "jetwheel", "triton.check", "--profile", "triton-mini", "--image", image],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 5 and all(ln.startswith("FAIL  ") and " -- fix: " in ln for ln in lines), lines
    assert lines[0].startswith("FAIL  import mini_torch: ModuleNotFoundError: No module named 'mini_torch' -- fix: ")
    assert "inv triton.requirements" in lines[0]
    assert lines[4].endswith("-- fix: its module did not import: fix the import failure above first")


def test_smoke_fixes_follow_the_error() -> None:
    missing = "ImportError: libopenblas.so.0: cannot open shared object file: No such file or directory"
    assert "the image lacks libopenblas.so.0: ship it in the runtime tarball" in fix_for("import", missing)
    assert "another torch" in fix_for("extension", "ImportError: /x/_C.so: undefined symbol: _ZN3c10")
    assert "torchvision" in fix_for("lookup", "RuntimeError: operator torchvision::nms does not exist")
    no_device = "RuntimeError: Found no NVIDIA driver on your system"
    assert "--runtime nvidia" in fix_for("gpu", no_device) and "igpu-min" in fix_for("gpu", no_device)
    assert "TORCH_CUDA_ARCH_LIST=8.7" in fix_for("gpu", "RuntimeError: CUDA error: no kernel image is available")


def test_smoke_needs_the_profile_to_name_its_modules() -> None:
    profile = load_profile("triton-mini", RECIPES)
    assert profile.triton is not None
    bare = replace(profile, triton=replace(profile.triton, smoke=None))
    with pytest.raises(JetwheelError, match=r"no \[triton.smoke\] table"):
        smoke_check(bare, "x")


@pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed")
def test_check_judges_the_stack_against_the_runtime_and_the_tarball(triton_index: Server, tmp_path: Path) -> None:
    """With --policy, triton.check reads the runtime tarball the index serves and verifies the
    published stack against the runtime plus it: the stand-in's own base image passes the mini stack;
    the same image without libstdc++ fails it, naming the library (~2 s after the stack is built)."""
    from jetwheel.runners.baseimage import ensure_base_image
    from jetwheel.runtime.image import policy_from_image
    from jetwheel.verify.policy import Policy, save

    image = ensure_base_image()
    profile, client = load_profile("triton-mini", RECIPES), triton_index.client()
    full = policy_from_image(image)
    save(full, tmp_path / "image.policy.json")
    report = check(profile, client, tmp_path / "image.policy.json")
    assert report.passed, report.to_json()
    assert "runtime" in report.checks
    assert report.facts["runtime"][0].startswith(f"{image}@sha256:")
    assert report.facts["runtime"][1].startswith("nvpl_slim_24.04.tar sha256:")  # the tarball on the index
    names = {n: p for n, p in full.names.items() if n != "libstdc++.so.6"}
    save(Policy(full.sources, full.machine, full.files, names), tmp_path / "trimmed.policy.json")
    report = check(profile, client, tmp_path / "trimmed.policy.json")
    assert report.failing_checks() == ["runtime"]
    assert any("needs libstdc++.so.6" in f.detail for f in report.findings), report.to_json()
