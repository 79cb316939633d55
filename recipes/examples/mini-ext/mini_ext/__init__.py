"""A stand-in extension package; its import name is set at build time (see setup.py)."""

import mini_torch  # noqa: F401  (loads libminitorch.so first, as torchaudio imports torch)

from ._C import total

__all__ = ["total"]
