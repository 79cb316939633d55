"""A torchvision-like stand-in: its extension links mini-torch's library and registers an operator."""

import mini_torch  # noqa: F401  (loads libminitorch.so first, as torchvision imports torch)

from ._C import boxes

__all__ = ["boxes"]
