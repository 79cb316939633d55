from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest

from jetwheel.errors import RecipeError
from jetwheel.model.recipe import load_profile, load_recipe, load_recipes

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
EXAMPLES = RECIPES / "examples"


def write(root: Path, name: str, text: str) -> Path:
    p = root / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def test_real_recipes_load_and_name_every_package_of_the_stack() -> None:
    recipes = load_recipes(RECIPES)
    assert {"torch", "torchvision", "torchaudio", "pytorch-triton", "vllm", "xgrammar"} <= set(recipes)
    assert recipes["vllm"].extensions == (
        "vllm._C",
        "vllm._moe_C",
        "vllm.vllm_flash_attn._vllm_fa2_C",
        "vllm.cumem_allocator",
    )
    assert recipes["torch"].env["USE_CUDA"] == "1" and recipes["torch"].env["USE_NCCL"] == "0"
    # preflight's disk check asks each build for what it needs, not one figure for all
    assert recipes["torch"].disk_gb > recipes["torchvision"].disk_gb > load_recipe(EXAMPLES / "mini-torch.toml").disk_gb


@pytest.mark.parametrize("name", ["torchvision", "torchaudio", "vllm"])
def test_a_torch_extension_never_carries_the_torch_it_was_built_against(name: str) -> None:
    # the torch libraries come from the torch installed beside the wheel: PyPI's and JetPack's are
    # unversioned; Debian's (the arm64 sysroot's) carry their version, and a pattern without the tail
    # let auditwheel graft the sysroot's libtorch_cuda.so.2.6 into torchvision (verify refused it:
    # abi, and sm_50-sm_90 SASS without sm_87)
    exclude = load_recipes(RECIPES)[name].exclude
    for lib in ("libtorch_cuda.so", "libc10.so", "libtorch_cuda.so.2.6", "libtorch.so.2.6", "libc10_cuda.so.2.6"):
        assert any(fnmatch.fnmatch(lib, pattern) for pattern in exclude), (name, lib)


def test_profile_pins_agree_with_vllm_0_8_1_wheel_metadata() -> None:
    p = load_profile("triton-25.04", RECIPES)
    assert (p.python, p.platform, p.cuda_arch, p.cuda) == ("3.12", "linux_aarch64", "8.7", "12.6")
    assert p.base_image == "nvcr.io/nvidia/l4t-jetpack:r36.4.0"
    assert {
        k: v for k, v in p.versions.items() if k in ("vllm", "torch", "torchvision", "torchaudio", "pytorch-triton")
    } == {
        "vllm": "0.8.1",
        "torch": "2.6.0",
        "torchvision": "0.21.0",
        "torchaudio": "2.6.0",
        "pytorch-triton": "3.2.0",
    }


BASE = '[package]\nname = "a"\n[source]\npath = "."\n'
LABEL = '[package]\nname = "a"\nlocal_version = {}\nlocal_version_unless_cuda = {}\n[source]\npath = "."\n'


@pytest.mark.parametrize(
    "text, message",
    [
        (BASE + "[build]\nfrobnicate = 1\n", "build.frobnicate: unknown key"),
        ('[package]\nname = "a"\n[source]\nurl = "https://x/a-1.tar.gz"\n', "source.sha256 is missing"),
        (BASE + '[build]\ndeps = ["nothere"]\n', "build.deps names 'nothere', which has no recipe"),
        (BASE + '[build]\nrun_deps = ["nothere"]\n', "build.run_deps names 'nothere', which has no recipe"),
        ('[package]\nname = "a"\n[source\n', "malformed TOML"),
        ('[package]\n[source]\npath = "."\n', "package.name is missing"),
        (BASE + "[repair]\nmanylinux = false\n", "repair.reason is missing"),
        ('[package]\nname = "a"\n[source]\ngit = "https://x/a"\n', "source.ref is missing"),
        (BASE + "[build]\nenv = { X = 1 }\n", "values must be strings"),
        (BASE + '[build]\nfrontend = "setuptools"\n', 'build.frontend must be "build", "pip" or "cibuildwheel"'),
        (LABEL.format('"cu{cudnn}"', '"12.4"'), "package.local_version uses unknown placeholder {cudnn}"),
        (LABEL.format('"cu{cuda"', '"12.4"'), "package.local_version 'cu{cuda' is malformed"),
        (LABEL.format('"cu{cuda_nodot}"', '"twelve"'), "package.local_version_unless_cuda must be a CUDA version"),
        (LABEL.format('"cu126"', '"12.4"'), "package.local_version_unless_cuda needs a local_version that names"),
    ],
)
def test_recipe_errors_name_file_key_and_fix(tmp_path: Path, text: str, message: str) -> None:
    p = write(tmp_path, "a.toml", text)
    with pytest.raises(RecipeError) as e:
        load_recipes(tmp_path)
    assert str(p) in str(e.value) and message in str(e.value)


def test_dependency_cycle_is_named(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", '[package]\nname = "a"\n[source]\npath = "."\n[build]\ndeps = ["b"]\n')
    write(tmp_path, "b.toml", '[package]\nname = "b"\n[source]\npath = "."\n[build]\ndeps = ["a"]\n')
    with pytest.raises(RecipeError, match="dependency cycle a -> b -> a"):
        load_recipes(tmp_path)
    # through what a wheel requires at run time too: the plan orders by both
    write(tmp_path, "b.toml", '[package]\nname = "b"\n[source]\npath = "."\n[build]\nrun_deps = ["a"]\n')
    with pytest.raises(
        RecipeError, match=r"dependency cycle a -> b -> a; remove one of these build\.deps or build\.run_deps"
    ):
        load_recipes(tmp_path)


def test_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(RecipeError, match=r"unknown profile .nope.; known profiles: .*triton-25\.04"):
        load_profile("nope", RECIPES)
