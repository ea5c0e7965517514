"""SPAN fusing: re-parameterise SPAN's 3x3 convolutions once, at load.

spandrel's SPAN re-derives ("re-parameterises") every 3x3 convolution from its training
branches on every forward call. :func:`fuse_span` does it once at load and makes the forward
use the fused convolution directly: bit-identical in fp32, and the fused weights are computed
in fp32 before a cast to bf16/fp16 (spandrel would re-fuse in the low precision each call).
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["fuse_span"]


def _fused_conv3xc_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
    """Conv3XC.forward with the re-parameterisation done once, at load."""
    if self.training:  # training branches changed: fall back to spandrel's own forward
        return type(self).forward(self, x)
    out = self.eval_conv(x)
    if self.has_relu:
        import torch.nn.functional as F

        out = F.leaky_relu(out, negative_slope=0.05)
    return out


def fuse_span(model: torch.nn.Module) -> int:
    """Fuse every SPAN ``Conv3XC`` of ``model`` once; return how many were fused.

    Must run while the model is in fp32 and eval mode; the result is bit-identical to
    spandrel's per-call fusing in fp32. Models without Conv3XC are left alone (returns 0).
    """
    import torch

    fused = 0
    with torch.no_grad():
        for module in model.modules():
            if type(module).__name__ != "Conv3XC" or not hasattr(module, "update_params"):
                continue
            conv: Any = module
            conv.update_params()
            conv.forward = types.MethodType(_fused_conv3xc_forward, conv)
            fused += 1
    return fused
