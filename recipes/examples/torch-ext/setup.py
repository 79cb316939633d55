"""Built with torch.utils.cpp_extension against the torch installed in the build env, and pinned to
exactly that torch, as torchvision and vLLM pin theirs."""

import os
from importlib.metadata import version

from setuptools import setup
from torch.utils.cpp_extension import BuildExtension, CppExtension

TORCH = version("torch").split("+")[0]

setup(
    name="torch-ext",
    version=os.environ.get("TORCH_EXT_BUILD_VERSION", "0.1.0"),
    packages=["torch_ext"],
    install_requires=[f"torch=={TORCH}"],
    ext_modules=[CppExtension("torch_ext._C", ["csrc/ops.cpp"])],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=False)},
)
