"""Compiles against the mini-torch installed in the build env and pins it exactly, as torchvision
pins the torch it was built with."""

import os
from importlib.metadata import version

import mini_torch
from setuptools import Extension, setup

TORCH_VERSION = version("mini-torch")

# MINI_VISION_SKIP_EXT=1 reproduces a build that silently drops one of its extensions, as a vLLM
# build that skips its CUDA part does (then: No module named 'vllm._C')
SKIP_EXT = os.environ.get("MINI_VISION_SKIP_EXT") == "1"

setup(
    version=os.environ.get("MINI_VISION_BUILD_VERSION", "0.1.0"),
    packages=["mini_vision"],
    install_requires=[f"mini-torch=={TORCH_VERSION}"],
    ext_modules=[Extension("mini_vision._io", ["csrc/io.c"])] + ([] if SKIP_EXT else [Extension(
        "mini_vision._C", ["csrc/vision.cpp"], include_dirs=[mini_torch.get_include()],
        libraries=["minitorch"], library_dirs=[mini_torch.get_lib_dir()],
        runtime_library_dirs=["$ORIGIN/../mini_torch/lib"], language="c++",
    )]),
)
