"""Casting a model for reduced-precision inference without losing what needs fp32."""

from __future__ import annotations

import torch
from torch import nn

from export.models.layers import RMSNorm, Rotary


def cast_for_inference(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Weights in `dtype`, except the norms' scales and the rotary frequencies, kept in fp32.

    `Module.to(dtype)` would also cast the rotary inverse frequencies, and position x frequency in
    bf16 (8-bit mantissa) is off by whole radians at the far end of a 1,022-long history. The norms
    compute in fp32 anyway; their scales stay fp32 so that no precision is dropped there.
    """
    module.to(dtype=dtype)
    for sub in module.modules():
        if isinstance(sub, (RMSNorm, Rotary)):
            sub.float()
    return module
