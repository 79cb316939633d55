"""One source for several stand-in extensions, the parallel branches of the fleet plan (as
torchaudio, pytorch-triton and xgrammar each need only torch): the distribution's name comes from
MINI_EXT_NAME, its import package is that name with underscores. Each compiles against the mini-torch
installed in the build env and pins exactly the versions of MINI_EXT_DEPS found there."""

import os
from importlib.metadata import version

import mini_torch
from setuptools import Extension, setup

NAME = os.environ["MINI_EXT_NAME"]
PKG = NAME.replace("-", "_")
DEPS = [d for d in os.environ.get("MINI_EXT_DEPS", "mini-torch").split(",") if d]

setup(
    name=NAME,
    version=os.environ.get("MINI_EXT_BUILD_VERSION", "0.1.0"),
    packages=[PKG],
    package_dir={PKG: "mini_ext"},
    install_requires=[f"{d}=={version(d)}" for d in DEPS],
    ext_modules=[Extension(
        f"{PKG}._C", ["csrc/ext.cpp"], include_dirs=[mini_torch.get_include()],
        define_macros=[("EXT_NAME", f'"{PKG}"')], libraries=["minitorch"], library_dirs=[mini_torch.get_lib_dir()],
        runtime_library_dirs=["$ORIGIN/../mini_torch/lib"], language="c++",
    )],
)
