"""Real upstream bytes through the real recipes: xgrammar 0.1.16 (shared/sources, served by the index
as a source archive) built for cp312 x86_64 and for aarch64, a torch extension of our own built
against PyPI's real aarch64 torch 2.6.0, and vLLM 0.8.1's real sdist through its recipe's source
pin and pre-steps. Each wheel is repaired, verified, published, installed from the index into a
fresh environment and used."""

from __future__ import annotations

import configparser
import dataclasses
import json
import os
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Server, pip_env, run_in_arm64, start_server, stop_server
from podman_layer import committed_layer
from realwheels import real_wheel
from test_sources import XGRAMMAR

from jetwheel.build.engine import Options, StepResult, run_plan
from jetwheel.build.plan import make_plan
from jetwheel.digest import sha256_file
from jetwheel.machine import this_machine
from jetwheel.model.recipe import load_profile, load_recipes
from jetwheel.model.runnerkind import parse_runner
from jetwheel.model.stepsource import StepSource
from jetwheel.runners import Runner, make_runner
from jetwheel.runners.baseimage import BUILDER_ARM64, ensure_base_image
from jetwheel.runners.emulation import ensure_emulation
from jetwheel.sources.fetch import make_archive
from jetwheel.verify import read_wheels, verify_wheel
from jetwheel.workflow.context import settings

ARM_IMAGE = BUILDER_ARM64
CA = "/etc/ssl/certs/ca-certificates.crt"
CACHE = Path.home() / ".cache" / "jetwheel"

# xgrammar's C++ core, without its Python layer (whose matcher imports torch): a JSON schema compiled
# by GrammarCompiler, then strings fed to a GrammarMatcher. Prints: match, wrong type, missing key.
XGRAMMAR_PROBE = """
import importlib.util, json, pathlib
pkg = importlib.util.find_spec("xgrammar").submodule_search_locations[0]
so = next(pathlib.Path(pkg).glob("xgrammar_bindings*.so"))
spec = importlib.util.spec_from_file_location("xgrammar_bindings", so)
core = importlib.util.module_from_spec(spec)
spec.loader.exec_module(core)
schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}
compiled = core.GrammarCompiler(core.TokenizerInfo([], 0, None, None, False), 1, False).compile_json_schema(
    json.dumps(schema), True, None, None, True)
def accepts(text):
    matcher = core.GrammarMatcher(compiled, None, True, 0)
    return matcher._debug_accept_string(text, False) and matcher.is_terminated()
print(accepts('{"name": "Orin", "age": 3}'), accepts('{"name": "Orin", "age": "3"}'), accepts('{"name": "Orin"}'))
"""


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The LAN index of an air-gapped builder: it holds xgrammar's source archive (packed by
    `inv sources.fetch --from` the project's copy of upstream), names nothing upstream else."""
    root = tmp_path_factory.mktemp("real-index")
    server = start_server(root / "packages")
    src = StepSource("git", sha256=load_recipes()["xgrammar"].source.sha256)
    archive = make_archive("xgrammar", "0.1.16", src, root / "sources", XGRAMMAR)
    server.client().upload(archive.path, artifact=True)
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def torch_on_index(index: Server) -> Path:
    """PyPI's aarch64 cp311 torch 2.6.0, published as the owned torch (no build: its wheel is real)."""
    wheel = real_wheel("torch", "2.6.0", "3.11", "aarch64")
    index.client().upload(wheel)
    return wheel


@pytest.fixture(scope="module")
def arm64() -> str:
    ensure_emulation("aarch64")
    return ensure_base_image(ARM_IMAGE, "aarch64")


@pytest.fixture(scope="module")
def torch_image(arm64: str, index: Server, torch_on_index: Path) -> str:
    """An arm64 image whose /v venv has torch 2.6.0 installed from the index, i.e. the very wheel
    the index serves. Installing torch under qemu takes minutes, so podman keeps this layer between
    runs, named by the wheel's sha256; each test starts a fresh container of it."""
    name = f"localhost/jetwheel-test-torch:2.6.0-{sha256_file(torch_on_index)[:16]}-arm64"
    cert = ("-v", f"{CA}:/ca.crt:ro", "-e", "PIP_CERT=/ca.crt") if os.path.exists(CA) else ()
    script = f"python3 -m venv /v && /v/bin/pip install -q --index-url {index.simple} torch==2.6.0"
    return committed_layer(name, arm64, script, ("--arch", "arm64", "--network=host", *cert))


def build(
    server: Server, profile_name: str, target: str, runner: str, tmp: Path, skip: tuple[str, ...] = ()
) -> StepResult:
    """Build `target` through the real engine (force: every run really builds); return its step."""
    recipes, profile = load_recipes(), load_profile(profile_name)
    plan = make_plan(recipes, profile, target, "docker" if runner == "emulated" else runner, this_machine())
    # steps whose wheel is already on the index, as PyPI's torch is here
    plan = dataclasses.replace(plan, steps=tuple(s for s in plan.steps if s.name not in skip))
    if runner == "emulated":
        from jetwheel.runners import DockerRunner

        run: Runner = DockerRunner(engine="podman", arch="aarch64", ca_bundle=CA if os.path.exists(CA) else "")
    else:
        run = make_runner(parse_runner(runner), settings(), arch="aarch64" if profile.arch == "aarch64" else "")
    [result] = run_plan(
        plan, recipes, profile, run, server.client(), Options(force=True, work_root=tmp / "w", log_root=tmp / "logs")
    )
    assert result.status == "published" and result.report is not None and result.report.passed
    return result


def provenance_source(server: Server, wheel: str) -> dict[str, str]:
    info = server.client().file_info(wheel)
    assert info is not None
    return dict(info["provenance"]["source"])


@pytest.mark.real
@pytest.mark.slow
def test_xgrammar_builds_for_cp312_x86_64_from_the_index_and_its_core_matches_json(
    index: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    python312(monkeypatch)
    result = build(index, "host-cp312", "xgrammar", "local", tmp_path)
    assert result.wheel.startswith("xgrammar-0.1.16-cp312-cp312-manylinux_") and result.wheel.endswith("_x86_64.whl")
    source = provenance_source(index, result.wheel)
    assert source["from"] == f"{index.url}/packages/xgrammar-0.1.16-src.tar.gz"
    assert source["commit"] == "989222175c2a30fb7987d8bcce35bec1bf6817f2"
    with urllib.request.urlopen(f"{index.url}/") as r:  # the people's page names where it came from
        assert "(commit 989222175c2a), sha256 4742d1a7e5fb…, taken from" in r.read().decode()
    venv = tmp_path / "venv"
    subprocess.run(["python3.12", "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin/pip"), "install", "-q", "--no-deps", "--index-url", index.simple, "xgrammar==0.1.16"],
        check=True,
        env=pip_env(),
    )
    out = subprocess.run([str(venv / "bin/python"), "-c", XGRAMMAR_PROBE], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False", "False"]


@pytest.mark.real
@pytest.mark.slow
def test_xgrammar_builds_for_aarch64_and_its_core_matches_json_in_a_fresh_arm64_container(
    index: Server, torch_on_index: Path, arm64: str, tmp_path: Path
) -> None:
    """Crossed (the recipe's faster aarch64 path here, see bench/xgrammar_build.py), verified
    against the index's aarch64 torch, which its Requires-Dist names."""
    result = build(index, "bookworm-aarch64", "xgrammar", "cross", tmp_path)
    wheel = read_wheels([index.root / result.wheel])[0]
    assert wheel.machine == "aarch64" and "-cp311-cp311-manylinux_" in result.wheel
    assert result.report is not None and result.report.facts["closure"] == ["torch==2.6.0"]
    assert provenance_source(index, result.wheel)["from"] == f"{index.url}/packages/xgrammar-0.1.16-src.tar.gz"
    # into the throwaway container's own Python: a venv costs a minute of emulated pip bootstrapping
    script = f"pip install -q --no-deps --break-system-packages --index-url {index.simple} xgrammar==0.1.16"
    out = run_in_arm64(arm64, f'{script} && python3 -c "$CODE"', XGRAMMAR_PROBE)
    assert out.split() == ["True", "False", "False"]


@pytest.mark.real
@pytest.mark.slow
def test_torch_extension_builds_against_pypi_torch_passes_verify_and_runs_through_torch_ops(
    index: Server, torch_on_index: Path, torch_image: str, tmp_path: Path
) -> None:
    """Built in the arm64 container against the index's torch 2.6.0 by torch.utils.cpp_extension,
    as torchvision's and vLLM's steps build theirs; against torch 2.7.0 verify names what breaks."""
    result = build(index, "bookworm-aarch64", "torch-ext", "emulated", tmp_path, skip=("torch",))
    assert result.wheel == "torch_ext-0.1.0-cp311-cp311-linux_aarch64.whl"
    assert result.report is not None and result.report.facts["closure"] == ["torch==2.6.0"]
    wheel = read_wheels([index.root / result.wheel])[0]
    assert list(wheel.requires) == ["torch==2.6.0"]
    torch27 = read_wheels([real_wheel("torch", "2.7.0", "3.11", "aarch64")])[0]
    report = verify_wheel(wheel, load_profile("bookworm-aarch64").target(), load_recipes()["torch-ext"], [torch27])
    errors = {f.check: f.detail for f in report.findings if f.severity == "error" and f.check == "abi"}
    assert set(report.failing_checks()) == {"abi", "pins"}, report.to_json()
    assert "at::cpu::is_arm_sve_supported()" in errors["abi"]  # demangled, as the loader would miss it
    assert "requires torch==2.6.0, but torch 2.7.0 is in the set" in [f.detail for f in report.findings]
    code = (
        "import torch, torch_ext; x = torch.arange(3.0); "
        "print(torch.__version__, torch.ops.torch_ext.scale_add(x, torch.ones(3), 2.0).tolist(), "
        "type(torch.ops.torch_ext.has_sve()).__name__)"
    )
    script = f'/v/bin/pip install -q --index-url {index.simple} torch-ext==0.1.0 && /v/bin/python -c "$CODE"'
    version, *rest = run_in_arm64(torch_image, script, code).split()
    assert version.startswith("2.6.0") and rest == ["[2.0,", "3.0,", "4.0]", "bool"]  # PyPI aarch64: 2.6.0+cpu


@pytest.mark.real
@pytest.mark.slow
def test_vllm_sdist_is_pinned_and_its_pre_steps_strip_torch_and_leave_resolvable_build_requirements(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """vLLM 0.8.1's real sdist through the recipe's source pin and exactly the plan's pre-step
    commands (the CUDA compile after them needs a Jetson)."""
    from jetwheel.build.plan import TARGET_ENV
    from jetwheel.sources.fetch import Lookup, fetch_source

    python312(monkeypatch)
    plan = make_plan(load_recipes(), load_profile("triton-25.04"), "vllm", "local", this_machine())
    step = plan.steps[-1]
    src = fetch_source(step.name, step.pin, step.source, tmp_path / "src", Lookup(cache=CACHE / "sources"))
    assert src.origin == step.source.url and src.sha256 == step.source.sha256
    tree = tmp_path / "src"
    # the recipe expects what setup.py builds for CUDA 12 (line 642-664), but the Hopper-only two,
    # which are empty CMake targets for 8.7 (FlashMLA's by vLLM, FA3's by the flash-attention patch)
    setup = (tree / "setup.py").read_text()
    built = set(re.findall(r'CMakeExtension\(\s*name="(vllm\.[\w.]+)"', setup)) - {"vllm._rocm_C"}
    hopper = {"vllm.vllm_flash_attn._vllm_fa3_C", "vllm._flashmla_C"}
    assert hopper <= built and set(load_recipes()["vllm"].extensions) == built - hopper
    before = {p: (tree / p).read_text().splitlines() for p in ["pyproject.toml", *sorted(_reqs(tree))]}
    # the step's venv (with the profile's Python), then its pre-steps, verbatim
    venv, export = step.commands[:2]
    pre = [c for c in step.commands if c.startswith(f'({TARGET_ENV} && cd "$JW_SRC" && ')]
    assert [c.rsplit("&& ", 1)[1] for c in pre] == [
        "python use_existing_torch.py)",
        "pip install -r requirements/build.txt)",
        'grep -q "^py_limited_api" setup.cfg || printf "\\n[bdist_wheel]\\npy_limited_api = cp38\\n" >> setup.cfg)',
    ]
    env = dict(pip_env(), JW_WORK=str(tmp_path), JW_SRC=str(tree), PIP_INDEX_URL="https://pypi.org/simple/")
    done = subprocess.run(
        ["bash", "-c", "\n".join(["set -euo pipefail", venv, export, *pre])], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-1500:] + done.stderr[-1500:]
    # bdist_wheel tags the wheel cp38-abi3, once, even when a resumed step runs the pre-steps again
    subprocess.run(["bash", "-c", pre[-1]], env=env, check=True)
    cfg = configparser.ConfigParser()
    cfg.read(tree / "setup.cfg")
    assert dict(cfg["bdist_wheel"]) == {"py_limited_api": "cp38"}
    removed = {
        p: [line.strip() for line in lines if line not in (tree / p).read_text().splitlines()]
        for p, lines in before.items()
    }
    # what the CUDA build reads (the other platforms' files lose their torch lines too)
    used = ("pyproject.toml", "requirements/build.txt", "requirements/cuda.txt", "requirements/common.txt")
    assert not any("torch" in line.lower() for p in before for line in (tree / p).read_text().splitlines())
    assert {p: removed[p] for p in used if removed[p]} == {
        "pyproject.toml": ['"torch == 2.6.0",'],
        "requirements/build.txt": ["torch==2.6.0"],
        "requirements/cuda.txt": [
            "torch==2.6.0",
            "torchaudio==2.6.0",
            "# These must be updated alongside torch",
            "torchvision==0.21.0 # Required for phi3v processor. See https://github.com/pytorch/vision?tab="
            "readme-ov-file#installation for corresponding version",
            "xformers==0.0.29.post2; platform_system == 'Linux' and platform_machine == 'x86_64'  "
            "# Requires PyTorch 2.6.0",
        ],
    }
    # the build requirements resolved and installed into the step's env, and no torch came with them
    listed = subprocess.run(
        [str(tmp_path / "env/bin/python"), "-m", "pip", "list", "--format=json"], capture_output=True, text=True
    )
    installed = {p["name"].lower(): p["version"] for p in json.loads(listed.stdout)}
    assert {"cmake", "ninja", "packaging", "setuptools", "setuptools-scm", "wheel", "jinja2"} <= set(installed)
    assert "torch" not in installed


def test_xgrammar_is_crossed_for_aarch64_and_torch_extensions_are_emulated() -> None:
    """The faster path by default (bench/xgrammar_build.py); a chain with a recipe whose build
    imports its aarch64 dependency (torch) falls back to the emulated container."""
    from jetwheel.build.plan import default_runner

    recipes, profile = load_recipes(), load_profile("bookworm-aarch64")
    assert default_runner(recipes, profile, "xgrammar", "x86_64") == "cross"
    assert default_runner(recipes, profile, "torch-ext", "x86_64") == "docker"
    assert default_runner(recipes, profile, "xgrammar", "aarch64") == "local"
    # the Jetson profile's Python (3.12) is not the one a cross build here would run
    assert default_runner(recipes, load_profile("triton-25.04"), "xgrammar", "x86_64") == "docker"


def _reqs(tree: Path) -> list[str]:
    return [str(p.relative_to(tree)) for p in (tree / "requirements").glob("*.txt")]


def python312(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cp312 profiles build with `python3.12`; on these machines pyenv provides it."""
    if shutil.which("pyenv") and subprocess.run(["python3.12", "--version"], capture_output=True).returncode != 0:
        monkeypatch.setenv("PYENV_VERSION", "3.12.1")
