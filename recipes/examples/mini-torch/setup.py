"""Builds libminitorch.so first (as torch builds libc10/libtorch with CMake), then the extension."""

import os
import shutil
import subprocess
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent.resolve()
ABI = os.environ.get("MINITORCH_ABI", "1")


class BuildWithLibrary(build_ext):
    def run(self) -> None:
        lib_dir = HERE / "mini_torch" / "lib"
        lib_dir.mkdir(exist_ok=True)
        cxx = os.environ.get("CXX", "g++")
        subprocess.check_call([
            cxx, "-shared", "-fPIC", "-O2", f"-DMINITORCH_ABI={ABI}", "-I", str(HERE / "mini_torch" / "include"),
            "-Wl,-soname,libminitorch.so", "-o", str(lib_dir / "libminitorch.so"), str(HERE / "csrc" / "minitorch.cpp"),
        ])
        # build_py ran before this library existed: put it into the wheel's tree ourselves
        staged = Path(self.build_lib) / "mini_torch" / "lib"
        staged.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lib_dir / "libminitorch.so", staged / "libminitorch.so")
        super().run()


setup(
    version=os.environ.get("MINI_TORCH_BUILD_VERSION", "1.0.0"),
    packages=["mini_torch"],
    package_data={"mini_torch": ["lib/*.so", "include/*.h"]},
    ext_modules=[Extension(
        "mini_torch._C", ["csrc/module.cpp"], include_dirs=["mini_torch/include"],
        define_macros=[("MINITORCH_ABI", ABI)], libraries=["minitorch"], library_dirs=["mini_torch/lib"],
        runtime_library_dirs=["$ORIGIN/lib"], language="c++",
    )],
    cmdclass={"build_ext": BuildWithLibrary},
)
