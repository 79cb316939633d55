"""A torch-like stand-in: a C++ shared library (lib/libminitorch.so) and an extension over it."""

from pathlib import Path

from ._C import has_op, ones_sum, version

__all__ = ["get_include", "get_lib_dir", "has_op", "ones_sum", "version"]


def get_include() -> str:
    """Headers to compile an extension against, like torch.utils.cpp_extension.include_paths()."""
    return str(Path(__file__).parent / "include")


def get_lib_dir() -> str:
    """Where libminitorch.so lives, like torch/lib."""
    return str(Path(__file__).parent / "lib")
