"""A torch extension of jetwheel's own: `torch.ops.torch_ext.scale_add(x, y, alpha)` = x + alpha*y,
`torch.ops.torch_ext.has_sve()`: whether the CPU has SVE."""

import torch  # noqa: F401  (loads libtorch, whose symbols _C binds to)

from . import _C  # noqa: F401  (registers the op)
