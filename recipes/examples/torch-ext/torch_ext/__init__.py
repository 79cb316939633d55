"""A torch extension of jetwheel's own: `torch.ops.torch_ext.scale_add(x, y, alpha)` = x + alpha*y."""

import torch  # noqa: F401  (loads libtorch, whose symbols _C binds to)

from . import _C  # noqa: F401  (registers the op)
