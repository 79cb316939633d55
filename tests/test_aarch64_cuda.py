"""The Orin's CUDA code cross-built as aarch64 against the arm64 sysroot image, CI-sized: the image
made by the project's own task (`inv sysroot.setup`: trixie's torch 2.6.0 with CUDA 12.4, x86_64
nvcc 12.4 and aarch64 g++-13 inside); one CUDA translation unit each of torchvision 0.21.0,
torchaudio 2.6.0 (shared/sources) and vLLM 0.8.1 (PyPI's sdist) compiled in it for sm_87, each an
aarch64 object whose fatbin verify reads as sm_87 SASS; and a tiny CUDA torch extension linked
against the sysroot's libtorch_cuda.so and loaded by the sysroot's torch in the arm64 container
(qemu; no GPU: loaded, not run).

The whole builds are bench/sysroot_build.py's."""

from __future__ import annotations

import re
import subprocess
import tarfile
from pathlib import Path

import pytest
from shared_sources import SHARED

from jetwheel.build.plan import make_plan
from jetwheel.machine import this_machine
from jetwheel.model.recipe import load_profile, load_recipes
from jetwheel.runners.emulation import ensure_emulation
from jetwheel.runners.sysrootimage import NAME, ensure_sysroot_image, proof
from jetwheel.sources.fetch import Lookup, download_cache, fetch_source
from jetwheel.verify import fatbin

pytestmark = [pytest.mark.real, pytest.mark.slow]

PROFILE = "sysroot-trixie-arm64"
ORIN, JETPACK6_CUDA = 87, "12.6"
EXT = Path(__file__).parent / "data" / "sysroot_ext" / "add_one.cu"
TORCH_INC = "/usr/lib/python3/dist-packages/torch/include"
# what torch's cpp_extension gives nvcc for a CUDAExtension (its -D flags and include paths)
NVCC = (
    "nvcc -c -std=c++17 -gencode arch=compute_87,code=sm_87 -Xcompiler -fPIC --expt-relaxed-constexpr "
    "-D__CUDA_NO_HALF_OPERATORS__ -D__CUDA_NO_HALF_CONVERSIONS__ -D__CUDA_NO_BFLOAT16_CONVERSIONS__ "
    f"-D__CUDA_NO_HALF2_OPERATORS__ -DTORCH_API_INCLUDE_EXTENSION_H -I{TORCH_INC} "
    f"-I{TORCH_INC}/torch/csrc/api/include -I/usr/include/python3.13"
)
# unit -> (source, extra flags)
UNITS = {
    "torchvision": ("vision-0.21.0/torchvision/csrc/ops/cuda/nms_kernel.cu", "-DWITH_CUDA"),
    "torchaudio": ("audio-2.6.0/src/libtorchaudio/iir_cuda.cu", "-I/b/audio-2.6.0/src -DUSE_CUDA"),
    "vllm": ("vllm/csrc/activation_kernels.cu", "-I/b/vllm/csrc"),
    "ext": ("ext/add_one.cu", ""),
}
AARCH64 = 183  # e_machine of an aarch64 ELF


@pytest.fixture(scope="module")
def sysroot() -> str:
    """The sysroot image, made by the task's code (kept by podman, rebuilt when its inputs change)."""
    ensure_emulation("aarch64")
    return ensure_sysroot_image(NAME)


def make_trees(root: Path) -> Path:
    """`root` as /b: torchvision's and torchaudio's archives from shared/sources, vLLM's sdist as
    the sysroot profile's plan fetches it, and the tiny extension (bench/sysroot_units.py too)."""
    for name in ("vision-0.21.0.tar.gz", "audio-2.6.0.tar.gz"):
        with tarfile.open(Path(SHARED) / name) as tar:
            tar.extractall(root, filter="data")
    step = next(
        s
        for s in make_plan(load_recipes(), load_profile(PROFILE), "vllm", "docker", this_machine()).steps
        if s.name == "vllm"
    )
    fetch_source(step.name, step.pin, step.source, root / "vllm", Lookup(cache=download_cache()))
    (root / "ext").mkdir()
    (root / "ext" / EXT.name).write_bytes(EXT.read_bytes())
    return root


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_trees(tmp_path_factory.mktemp("sysroot-units"))


def script() -> str:
    """Compile every unit, two at a time (x86_64 nvcc and cross g++, natively), link the extension
    against the sysroot's libtorch_cuda, then load it with the sysroot's torch (the one emulated
    process)."""
    compiles = [
        f"{NVCC} {flags} /b/{src} -o /b/{name}.o && echo compiled {name} $SECONDS s"
        for name, (src, flags) in UNITS.items()
    ]
    pairs = [compiles[i : i + 2] for i in range(0, len(compiles), 2)]
    parallel = [
        " ; ".join(f"( {c} ) & p{j}=$!" for j, c in enumerate(pair)) + " ; wait $p0 && wait ${p1:-$p0}"
        for pair in pairs
    ]
    # linked by the name the root's Python gives setuptools (sysconfig's LDCXXSHARED), as a wheel's is
    link = (
        "aarch64-linux-gnu-g++ -shared /b/ext.o -o /b/jw_sysroot.so "
        "-Wl,--no-as-needed -ltorch_cuda -ltorch_cpu -lc10_cuda -lc10 -lcudart"
    )
    load = (
        'python3 -c \'import torch; torch.ops.load_library("/b/jw_sysroot.so"); '
        "op = torch.ops.jw_sysroot.add_one; "
        'print("loaded", torch.__version__, torch.version.cuda, op.default._schema, '
        'torch._C._dispatch_has_kernel_for_dispatch_key(op.default.name(), "CUDA"))\''
    )
    # $SECONDS: when each unit was done, and the load's start and end (the test log shows them)
    return "\n".join(["set -e", *parallel, link, "echo linked $SECONDS s", load, "echo loaded at $SECONDS s"])


@pytest.fixture(scope="module")
def built(sysroot: str, trees: Path) -> str:
    done = subprocess.run(
        ["podman", "run", "--rm", "--arch", "arm64", "-v", f"{trees}:/b", sysroot, "bash", "-c", script()],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def machine(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[18:20], "little")


def test_aarch64_cuda_sysroot_image_holds_its_torch_and_x86_nvcc(sysroot: str) -> None:
    said = proof(sysroot)
    assert "torch 2.6.0+debian cuda 12.4" in said, said
    assert "cuda_12.4" in said and "aarch64-linux-gnu-g++-13" in said, said


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_aarch64_cuda_unit_is_an_aarch64_object_with_sm87_sass(built: str, trees: Path, unit: str) -> None:
    obj = trees / f"{unit}.o"
    assert f"compiled {unit}" in built
    assert machine(obj) == AARCH64
    with obj.open("rb") as f:
        found = fatbin.scan(f)
    assert sorted({e.arch for e in found if e.kind == "sass"}) == [ORIN], [e.label() for e in found]
    assert fatbin.runs_on(found, ORIN, JETPACK6_CUDA) == (True, "SASS sm_87")


def test_aarch64_cuda_extension_links_libtorch_cuda_and_loads_in_the_arm64_container(built: str, trees: Path) -> None:
    lib = trees / "jw_sysroot.so"
    assert machine(lib) == AARCH64
    needed = subprocess.run(["readelf", "-d", str(lib)], capture_output=True, text=True, check=True).stdout
    assert re.search(r"NEEDED.*\[libtorch_cuda\.so\.2\.6\]", needed), needed
    # the sysroot's torch loaded it, and its kernel is registered for CUDA
    assert "loaded 2.6.0+debian 12.4 jw_sysroot::add_one(Tensor x) -> Tensor True" in built.splitlines(), built
