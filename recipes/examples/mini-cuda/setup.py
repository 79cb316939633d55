"""Compiles the kernel with nvcc for TORCH_CUDA_ARCH_LIST (as torch.utils.cpp_extension does) and
links it, with the static CUDA runtime, into an extension built against the installed mini-torch."""

import glob
import os
import shlex
import subprocess
from importlib.metadata import version
from pathlib import Path

import mini_torch
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent.resolve()
KERNEL_OBJ = HERE / "build" / "kernel.o"


def cuda_home() -> str:
    for candidate in [os.environ.get("CUDA_HOME", ""), "/usr/local/cuda", *sorted(glob.glob("/usr/local/cuda-*"))]:
        if candidate and os.path.isfile(os.path.join(candidate, "bin", "nvcc")):
            return candidate
    raise SystemExit("mini-cuda: no CUDA toolkit found (set CUDA_HOME)")


def gencode_flags(arch_list: str) -> list[str]:
    """"8.7" -> SASS for sm_87; "8.7+PTX" adds compute_87 PTX, as TORCH_CUDA_ARCH_LIST means."""
    flags = []
    for item in arch_list.replace(";", " ").split():
        ptx = item.endswith("+PTX")
        num = item.removesuffix("+PTX").replace(".", "")
        flags += ["-gencode", f"arch=compute_{num},code=sm_{num}"]
        if ptx:
            flags += ["-gencode", f"arch=compute_{num},code=compute_{num}"]
    return flags


class BuildWithKernel(build_ext):
    def run(self) -> None:
        KERNEL_OBJ.parent.mkdir(exist_ok=True)
        arch_list = os.environ.get("TORCH_CUDA_ARCH_LIST", "8.7")
        # PYTORCH_NVCC replaces nvcc, as in torch.utils.cpp_extension (e.g. "ccache /usr/local/cuda/bin/nvcc")
        nvcc = shlex.split(os.environ.get("PYTORCH_NVCC", "")) or [os.path.join(cuda_home(), "bin", "nvcc")]
        subprocess.check_call([
            *nvcc, "-c", "-O2", "-Xcompiler", "-fPIC",
            *gencode_flags(arch_list), "-o", str(KERNEL_OBJ), str(HERE / "csrc" / "kernel.cu"),
        ])
        super().run()


home = cuda_home()
setup(
    version=os.environ.get("MINI_CUDA_BUILD_VERSION", "0.1.0"),
    packages=["mini_cuda"],
    install_requires=[f"mini-torch=={version('mini-torch')}", f"mini-vision=={version('mini-vision')}"],
    ext_modules=[Extension(
        "mini_cuda._C", ["csrc/module.cpp"], include_dirs=[mini_torch.get_include(), f"{home}/include"],
        extra_objects=[str(KERNEL_OBJ)], libraries=["minitorch", "cudart_static", "rt", "pthread", "dl"],
        library_dirs=[mini_torch.get_lib_dir(), f"{home}/lib64", f"{home}/lib"],
        runtime_library_dirs=["$ORIGIN/../mini_torch/lib"], language="c++",
    )],
    cmdclass={"build_ext": BuildWithKernel},
)
