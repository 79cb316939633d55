"""A vLLM-like stand-in: a CUDA extension built against mini-torch, needing mini-vision beside it."""

import mini_torch  # noqa: F401  (loads libminitorch.so first)

from ._C import add_one, torch_version

__all__ = ["add_one", "torch_version"]
