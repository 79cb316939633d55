from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jetwheel.build.plan import make_plan, render_plan
from jetwheel.errors import PlanError
from jetwheel.machine import Machine
from jetwheel.model.locallabel import LocalLabel
from jetwheel.model.recipe import load_profile, load_recipes

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
ORIN = Machine(cores=12, memory_gb=64)


def vllm_plan(machine: Machine = ORIN, runner: str = "docker"):  # type: ignore[no-untyped-def]
    return make_plan(load_recipes(RECIPES), load_profile("triton-25.04", RECIPES), "vllm", runner, machine)


def test_vllm_chain_is_ordered_torch_first_vllm_last() -> None:
    names = [s.name for s in vllm_plan().steps]
    assert names[0] == "torch" and names[-1] == "vllm"
    assert set(names) == {"torch", "torchvision", "torchaudio", "pytorch-triton", "xgrammar", "vllm"}


def test_every_step_targets_sm_87_cp312_aarch64_in_the_jetpack_builder() -> None:
    plan = vllm_plan()
    for s in plan.steps:
        assert s.env["TORCH_CUDA_ARCH_LIST"] == "8.7"
        assert s.commands[0].startswith("python3.12 -m venv")
        # all but pytorch-triton, which cibuildwheel builds in its manylinux container
        assert s.image == ("host" if s.name == "pytorch-triton" else "jetwheel/builder:r36.4.0-py3.12")
    wheels = {s.name: s.wheel for s in plan.steps}
    assert wheels["torch"] == "torch-2.6.0+jp62.cu126-cp312-cp312-linux_aarch64.whl"
    assert wheels["torchvision"] == "torchvision-0.21.0+jp62.cu126-cp312-cp312-linux_aarch64.whl"
    assert wheels["vllm"] == "vllm-0.8.1+cu126-cp38-abi3-linux_aarch64.whl"


def test_vllm_step_installs_our_torch_from_the_index_and_builds_cuda() -> None:
    step = vllm_plan().steps[-1]
    install = step.commands[2]
    assert '--index-url "$JW_INDEX"' in install
    assert "torch==2.6.0" in install
    # what vLLM needs at run time is built before it, but its compile never imports it
    for runtime in ("torchvision", "torchaudio", "pytorch-triton", "xgrammar"):
        assert runtime not in install
    assert step.deps == ("torch",)
    assert step.after == ("pytorch-triton", "torchaudio", "torchvision", "xgrammar")  # published first
    assert step.env["VLLM_TARGET_DEVICE"] == "cuda"
    assert any("use_existing_torch.py" in c for c in step.commands)


def test_a_run_time_requirement_is_built_where_pinned_and_named_where_not(tmp_path: Path) -> None:
    # the sysroot profile pins neither pytorch-triton nor xgrammar (no aarch64 build of either is
    # reachable there): vLLM builds without them, and the plan says they were not built
    plan = make_plan(load_recipes(RECIPES), load_profile("sysroot-trixie-arm64"), "vllm", "docker", ORIN)
    assert [s.name for s in plan.steps] == ["torchaudio", "torchvision", "vllm"]
    assert plan.unpinned == ("pytorch-triton", "xgrammar")
    assert plan.steps[-1].after == ("torchaudio", "torchvision")
    assert "required at run time, not pinned by the profile, not built: pytorch-triton, xgrammar" in render_plan(plan)
    # a new xgrammar is a new wheel of xgrammar, not of vLLM
    copy = tmp_path / "recipes"
    shutil.copytree(RECIPES, copy, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    (copy / "xgrammar.toml").write_text((copy / "xgrammar.toml").read_text() + "\n# changed\n")
    changed = make_plan(load_recipes(copy), load_profile("triton-25.04", copy), "vllm", "docker", ORIN)
    keys = {s.name: s.cache_key for s in vllm_plan().steps}
    new = {s.name: s.cache_key for s in changed.steps}
    assert keys["xgrammar"] != new["xgrammar"] and keys["vllm"] == new["vllm"]


def test_max_jobs_follows_memory_not_cores() -> None:
    vllm = vllm_plan(Machine(cores=12, memory_gb=32)).steps[-1]  # 8 GB a vLLM nvcc job
    assert vllm.env["MAX_JOBS"] == "3"
    assert vllm_plan(Machine(cores=12, memory_gb=64)).steps[-1].env["MAX_JOBS"] == "6"


def test_cache_key_is_stable_and_changes_with_the_recipe(tmp_path: Path) -> None:
    assert [s.cache_key for s in vllm_plan().steps] == [s.cache_key for s in vllm_plan().steps]
    # MAX_JOBS is speed, not content: another machine reuses the cache
    assert vllm_plan(Machine(4, 16)).steps[0].cache_key == vllm_plan().steps[0].cache_key
    copy = tmp_path / "recipes"
    shutil.copytree(RECIPES, copy, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    (copy / "torch.toml").write_text((copy / "torch.toml").read_text().replace('USE_NCCL = "0"', 'USE_NCCL = "1"'))
    changed = make_plan(load_recipes(copy), load_profile("triton-25.04", copy), "vllm", "docker", ORIN)
    old, new = vllm_plan().steps, changed.steps
    assert old[0].cache_key != new[0].cache_key  # torch changed
    assert old[-1].cache_key != new[-1].cache_key  # and so did everything built on it
    assert {s.name: s.cache_key for s in old}["pytorch-triton"] == {s.name: s.cache_key for s in new}["pytorch-triton"]


def test_vllm_label_follows_the_profiles_cuda_as_its_setup_py_does() -> None:
    # vLLM 0.8.1's get_vllm_version: +cu<XYZ> unless nvcc is its MAIN_CUDA_VERSION 12.4
    recipes = load_recipes(RECIPES)
    for profile, version, wheel in (
        ("triton-25.04", "0.8.1+cu126", "vllm-0.8.1+cu126-cp38-abi3-linux_aarch64.whl"),
        ("x86-cuda12", "0.8.1", "vllm-0.8.1-cp38-abi3-linux_x86_64.whl"),
    ):
        step = make_plan(recipes, load_profile(profile, RECIPES), "vllm", "docker", ORIN).steps[-1]
        assert (step.version, step.wheel) == (version, wheel)
    # the same recipe under a CUDA that is neither: the label is computed, not either profile's text
    other = dataclasses.replace(load_profile("x86-cuda12", RECIPES), cuda="12.8")
    assert make_plan(recipes, other, "vllm", "docker", ORIN).steps[-1].version == "0.8.1+cu128"
    with pytest.raises(PlanError, match=r"vllm.toml: package.local_version names the CUDA, but the profile sets no"):
        make_plan(recipes, dataclasses.replace(other, cuda=""), "vllm", "docker", ORIN)


def test_vllm_label_leaves_the_other_steps_cache_keys_alone() -> None:
    # against vLLM's old fixed label (cu126): the label is vllm's own, so no other step's key or
    # wheel (nor a cached wheel of one) moves
    recipes = load_recipes(RECIPES)
    fixed = {**recipes, "vllm": dataclasses.replace(recipes["vllm"], local_version=LocalLabel("cu126"))}
    for profile in ("triton-25.04", "x86-cuda12"):
        now, before = (
            make_plan(r, load_profile(profile, RECIPES), "vllm", "docker", ORIN).steps for r in (recipes, fixed)
        )
        assert [s.cache_key for s in now[:-1]] == [s.cache_key for s in before[:-1]]
        assert [s.wheel for s in now[:-1]] == [s.wheel for s in before[:-1]]


def test_dry_run_cli_prints_the_chain_and_json() -> None:
    text = subprocess.run(
        [sys.executable, "-m", "jetwheel", "build-wheel", "vllm", "--profile", "triton-25.04", "--dry-run"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "TORCH_CUDA_ARCH_LIST=8.7" in text and "cp312-cp312-linux_aarch64.whl" in text
    assert text.index("] torch ") < text.index("] torchvision ") < text.index("] vllm ")
    doc = json.loads(
        subprocess.run(
            [sys.executable, "-m", "jetwheel", "build-wheel", "vllm", "--dry-run", "--json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert doc["python"] == "3.12" and doc["platform"] == "linux_aarch64" and len(doc["steps"]) == 6
    x86 = subprocess.run(
        [sys.executable, "-m", "jetwheel", "build-wheel", "vllm", "--profile", "x86-cuda12", "--dry-run"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "vllm-0.8.1-cp38-abi3-linux_x86_64.whl" in x86 and "+cu" not in x86.split("] vllm ")[1]


def test_bad_input_gives_one_line_and_no_traceback() -> None:
    for args, message in (
        (["build-wheel", "nothing"], "no profile pins 'nothing'"),
        (["build-wheel", "vllm", "--profile", "nope"], "unknown profile 'nope'"),
        (["build-wheel", "vllm", "--runner", "ssh"], "unknown runner 'ssh'"),
    ):
        r = subprocess.run([sys.executable, "-m", "jetwheel", *args, "--dry-run"], capture_output=True, text=True)
        assert r.returncode == 2  # ExitCode.USAGE
        assert "Traceback" not in r.stderr and message in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


def test_pytorch_triton_builds_with_cibuildwheel_as_upstream_does() -> None:
    step = next(s for s in vllm_plan().steps if s.name == "pytorch-triton")
    assert step.runner == "local" and step.image == "host"  # cibuildwheel starts its own container
    assert step.commands[-1].startswith("cibuildwheel --only cp312-manylinux_aarch64")
    assert step.env["CIBW_MANYLINUX_AARCH64_IMAGE"] == "quay.io/pypa/manylinux_2_28_aarch64"
    assert step.wheel == "pytorch_triton-3.2.0+jp62.cu126-cp312-cp312-manylinux_2_28_aarch64.whl"
    assert "TRITON_WHEEL_NAME" in step.env["CIBW_ENVIRONMENT_PASS_LINUX"].split()


def test_cibuildwheel_accepts_the_planned_configuration(tmp_path: Path) -> None:
    """The manylinux images are not reachable here: cibuildwheel itself checks the plan's
    configuration (identifiers, platform, environment) without starting a container."""
    step = next(s for s in vllm_plan().steps if s.name == "pytorch-triton")
    args = step.commands[-1].split()
    only = args[args.index("--only") + 1]
    env = {**dict(os.environ), **step.env}
    out = subprocess.run(
        ["cibuildwheel", "--print-build-identifiers", "--only", only, str(RECIPES / "examples" / "mini-torch")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["cp312-manylinux_aarch64"]
