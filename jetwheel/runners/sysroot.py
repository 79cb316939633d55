"""What a sysroot image must hold for the docker runner to cross-build CUDA wheels in it: the
target's torch and the libraries `import torch` loads, the headers extensions include, and x86_64
compilers (an emulated nvcc or g++ would make every compile many times slower). One shell script,
run once in the image, names each thing missing; preflight turns each into a failed check with its fix.

The same list holds for JetPack's l4t-jetpack image with jetwheel's torch installed: there the
fixes name JetPack's packages (cuda-cross-aarch64 for an x86_64 nvcc)."""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass

# x86_64 ELF, as `od` prints e_machine: the compilers run natively, not under qemu
X86_64 = "62"
MATH_VECTOR = "/usr/aarch64-linux-gnu/include/bits/math-vector.h"


@dataclass(frozen=True)
class Need:
    what: str  # what the build needs, as a check names it
    test: str  # a shell test that succeeds in an image that has it
    fix: str


def _native(path: str) -> str:
    return f'[ "$(od -An -j18 -N2 -tu2 "$(readlink -f "{path}")" | tr -d " ")" = {X86_64} ]'


NVCC = "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc"
TORCH_LIB = "/usr/lib/python3*/*-packages/torch/lib/libtorch_cuda.so"
FIND_TORCH = "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is None)"
PY_H = "import sysconfig, os, sys; sys.exit(not os.path.isfile(sysconfig.get_paths()['include'] + '/Python.h'))"
# the first word of each: setuptools compiles and links extensions with these, not with cc/c++
SYSCONFIG_CC = (
    "import sysconfig; print(*{(sysconfig.get_config_var(v) or 'cc').split()[0] "
    "for v in ('CC', 'CXX', 'LDSHARED', 'LDCXXSHARED')})"
)
NEEDS = (
    Need(
        "nvcc (x86_64)",
        # CUDA_HOME's, the one torch and CMake run (Debian's /usr/bin/nvcc is a shell wrapper)
        f"{NVCC} --version >/dev/null && {_native(NVCC)}",
        "inv sysroot.setup (the amd64 nvidia-cuda-toolkit in the root); JetPack: cuda-cross-aarch64",
    ),
    Need(
        "c++ for aarch64 (x86_64)",
        f'[ "$(c++ -dumpmachine)" = aarch64-linux-gnu ] && {_native("$(command -v c++)")}',
        "inv sysroot.setup (g++-13-aarch64-linux-gnu:amd64; /usr/local/bin/c++ is it)",
    ),
    Need(
        "torch",
        f"python3 -c {shlex.quote(FIND_TORCH)}",
        "apt-get install python3-torch-cuda (inv sysroot.setup); JetPack: pip install jetwheel's torch",
    ),
    Need(
        "libtorch_cuda.so",
        f"ldconfig -p | grep -q libtorch_cuda.so || compgen -G '{TORCH_LIB}' >/dev/null",
        "a CUDA build of torch (Debian: libtorch-cuda-2.6)",
    ),
    Need(
        "libcudnn.so.9",
        "ldconfig -p | grep -q libcudnn.so.9",
        "unpack PyPI's nvidia-cudnn-cu12==9.0.0.312.post1 aarch64 wheel's libs into /usr/lib/aarch64-linux-gnu",
    ),
    Need("libcuda.so.1", "ldconfig -p | grep -q libcuda.so.1", "apt-get install libcuda1:arm64 (loads without a GPU)"),
    Need("pybind11 headers", "[ -f /usr/include/pybind11/pybind11.h ]", "apt-get install pybind11-dev"),
    Need("Python headers", f"python3 -c {shlex.quote(PY_H)}", "apt-get install python3-dev"),
    Need(
        "the compilers Python's sysconfig names (x86_64)",
        f"for c in $(python3 -c {shlex.quote(SYSCONFIG_CC)}); do {_native('$(command -v $c)')} || exit 1; done",
        "inv sysroot.setup (links aarch64-linux-gnu-gcc/g++ to the cross compilers; setuptools links with them)",
    ),
    Need(
        "<bits/math-vector.h> nvcc reads",
        f"[ ! -f {MATH_VECTOR} ] || ! grep -q __Float32x4_t {MATH_VECTOR} "
        f"|| grep -q '!defined __CUDACC__' {MATH_VECTOR}",
        "inv sysroot.setup guards glibc >= 2.40's vector types against nvcc 12.4",
    ),
)


def script(needs: tuple[Need, ...] = NEEDS) -> str:
    """Prints `lacks: <what>` for each need whose test fails."""
    return "\n".join(f"( {n.test} ) >/dev/null 2>&1 || echo {shlex.quote('lacks: ' + n.what)}" for n in needs)


def lacks(probe_argv: list[str], needs: tuple[Need, ...] = NEEDS) -> tuple[list[Need], str]:
    """The needs the image lacks, run through `probe_argv` (a runner's `... image bash -c`); and an
    error when the image did not run at all."""
    done = subprocess.run([*probe_argv, script(needs)], capture_output=True, text=True)
    if done.returncode != 0:
        return [], (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
    missing = {line.removeprefix("lacks: ") for line in done.stdout.splitlines() if line.startswith("lacks: ")}
    return [n for n in needs if n.what in missing], ""
