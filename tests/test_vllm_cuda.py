"""vLLM 0.8.1's CUDA compile for the Orin (sm_87), CI-sized: the real CMake configure of PyPI's sdist
with the recipe's three sub-sources from shared/sources (flash-attention patched as the recipe
says), in the CUDA 12.4 toolchain image against PyPI's torch 2.6.0 x86_64, then one translation
unit each of `_C`, Marlin and FA2 compiled and read by verify's fatbin reader. The same FA2 unit
with flash-attention unpatched gets sm_80 SASS, which verify refuses for the Orin.

The whole build (about 100 units, hours on 2 cores) is bench/vllm_cuda.py's."""

from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path

import cudatorch
import pytest
from shared_sources import SHARED

from jetwheel.build.plan import make_plan
from jetwheel.machine import this_machine
from jetwheel.model.recipe import load_profile, load_recipes
from jetwheel.sources.fetch import Lookup, fetch_source
from jetwheel.sources.subsources import fetch_sub
from jetwheel.verify import fatbin

pytestmark = [pytest.mark.real, pytest.mark.slow]

PROFILE = "x86-cuda12"
TUS = {
    "_C": "CMakeFiles/_C.dir/csrc/activation_kernels.cu.o",
    "marlin": "CMakeFiles/_C.dir/csrc/quantization/gptq_marlin/awq_marlin_repack.cu.o",
    "fa2": "vllm-flash-attn/CMakeFiles/_vllm_fa2_C.dir/csrc/flash_attn/src/flash_fwd_hdim32_fp16_sm80.cu.o",
}
# setup.py's CMakeExtensions for CUDA >= 12.3, each a `cmake --build --target`
SETUP_TARGETS = ["_moe_C", "_vllm_fa2_C", "_vllm_fa3_C", "_flashmla_C", "cumem_allocator", "_C"]
ORIN, JETPACK6_CUDA = 87, "12.6"


@pytest.fixture(scope="module")
def torch_image() -> tuple[str, ...]:
    """`podman run` arguments: the toolchain image with PyPI's torch 2.6.0 venv at /v (tests/cudatorch.py)."""
    return cudatorch.torch_image()


def configure_and_compile(fa_tree: str, tus: list[str]) -> str:
    """The container's script: configure vLLM with the sub-sources (flash-attention from
    `fa_tree`), then build only the named objects."""
    cmake = (
        "cmake -S /b/vllm -B /b/build-$FA -G Ninja -DVLLM_TARGET_DEVICE=cuda -DVLLM_PYTHON_EXECUTABLE=/v/bin/python "
        "-DCMAKE_BUILD_TYPE=RelWithDebInfo -DFETCHCONTENT_BASE_DIR=/b/deps-$FA > /b/configure-$FA.log 2>&1"
    )
    return "\n".join(
        [
            "set -euo pipefail",
            "export TORCH_CUDA_ARCH_LIST=8.7 VLLM_CUTLASS_SRC_DIR=/b/cutlass FLASH_MLA_SRC_DIR=/b/FlashMLA",
            f"export FA={fa_tree} VLLM_FLASH_ATTN_SRC_DIR=/b/{fa_tree}",
            f"{cmake} || {{ tail -30 /b/configure-$FA.log; exit 1; }}",
            # every target vLLM's setup.py asks `cmake --build` for exists (FA3 and FlashMLA as empty ones)
            f"ninja -C /b/build-$FA -n {' '.join(SETUP_TARGETS)} >/dev/null",
            'echo "configured $(date +%s%N)"',
            # the units at once: two compile jobs fit this 2-core, 8 GB-per-job budget (cicc peaks ~1.8 GB)
            f"ninja -C /b/build-$FA -j2 {' '.join(shlex.quote(t) for t in tus)} >/dev/null",
            'echo "built units $(date +%s%N)"',
        ]
    )


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """/b: PyPI's sdist and the plan's sub-sources (from shared/sources, sha256-checked), laid out
    as the engine lays them; flash-attention twice, patched by the recipe's patch and not."""
    root = tmp_path_factory.mktemp("vllm-cuda")
    step = make_plan(load_recipes(), load_profile(PROFILE), "vllm", "docker", this_machine()).steps[-1]
    fetch_source(step.name, step.pin, step.source, root / "vllm", Lookup())
    for sub in step.source.subs:
        fetch_sub(sub, root / sub.name, Lookup(Path(SHARED)))
        if sub.patches:
            subprocess.run(["cp", "-a", str(root / sub.name), str(root / f"{sub.name}-unpatched")], check=True)
        for patch in sub.patches:
            subprocess.run(["patch", "-p1", "-s", "-d", str(root / sub.name), "-i", patch], check=True)
    assert sorted(p.name for p in root.iterdir()) == [
        "FlashMLA",
        "cutlass",
        "flash-attention",
        "flash-attention-unpatched",
        "vllm",
    ]
    return root


def build(image: tuple[str, ...], root: Path, fa_tree: str, tus: list[str]) -> dict[str, float]:
    """Configure and compile in a fresh container; seconds per stage (configure, then each unit)."""
    start = time.time_ns()
    done = subprocess.run(
        ["podman", "run", "--rm", "-v", f"{root}:/b", *image, "bash", "-c", configure_and_compile(fa_tree, tus)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = [line.split() for line in done.stdout.splitlines()]
    stamps = [(words[-2] if words[0] == "built" else "configure", int(words[-1])) for words in lines]
    out, last = {}, start
    for what, t in stamps:
        out[what], last = (t - last) / 1e9, t
    return out


def entries(obj: Path) -> list[fatbin.Entry]:
    with obj.open("rb") as f:
        return fatbin.scan(f)


@pytest.fixture(scope="module")
def patched(torch_image: tuple[str, ...], trees: Path) -> dict[str, float]:
    return build(torch_image, trees, "flash-attention", list(TUS.values()))


def test_vllm_cuda_units_hold_sm87_sass_for_the_orin(patched: dict[str, float], trees: Path) -> None:
    print(f"vllm_cuda patched: {patched}")
    log = (trees / "configure-flash-attention.log").read_text()
    assert "-- CUDA supported target architectures: 8.7" in log
    assert "-- FA2_ARCHS: 8.7" in log and "FA3 is not built" in log
    for kind, obj in TUS.items():
        found = entries(trees / "build-flash-attention" / obj)
        sass = sorted({e.arch for e in found if e.kind == "sass"})
        assert sass == [ORIN], (kind, [e.label() for e in found])
        # TORCH_CUDA_ARCH_LIST=8.7 asks for no PTX; any that comes must JIT on JetPack 6
        assert all(e.version <= fatbin.PTX_ISA_OF_CUDA[JETPACK6_CUDA] for e in found if e.kind == "ptx")
        assert fatbin.runs_on(found, ORIN, JETPACK6_CUDA) == (True, "SASS sm_87")


def test_vllm_cuda_unpatched_flash_attention_gets_sm80_which_verify_refuses(
    torch_image: tuple[str, ...], trees: Path, patched: dict[str, float]
) -> None:
    times = build(torch_image, trees, "flash-attention-unpatched", [TUS["fa2"]])
    print(f"vllm_cuda unpatched: {times}")
    log = (trees / "configure-flash-attention-unpatched.log").read_text()
    assert "-- FA2_ARCHS: 8.0" in log
    found = entries(trees / "build-flash-attention-unpatched" / TUS["fa2"])
    assert [e.label() for e in found] == ["sm_80"]
    ok, why = fatbin.runs_on(found, ORIN, JETPACK6_CUDA)
    assert not ok and "Tegra GPUs run only SASS built for their exact SM" in why
    assert fatbin.runs_on(found, 86, JETPACK6_CUDA)[0]  # a desktop 8.6 runs it
