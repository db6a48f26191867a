"""The precisions a run can take (`PREC`) and what each means on a device."""

from __future__ import annotations

import torch

from dassl.utils.errors import UserError

PRECISIONS = ("fp16", "fp32", "amp", "bf16")


def resolve_precision(prec: str, device: torch.device) -> str:
    """The precision that will actually run: fp16 and amp need a GPU, so CPU runs use fp32 instead."""
    if prec not in PRECISIONS:
        raise UserError(f"PREC must be one of {', '.join(PRECISIONS)}, got '{prec}'")
    if device.type == "cpu" and prec in ("fp16", "amp"):
        print(f"Note: PREC '{prec}' needs a GPU; running in fp32 on the CPU")
        return "fp32"
    return prec


def autocast(prec: str, device: torch.device) -> torch.autocast:
    """The autocast context for a precision (amp: fp16, bf16: bfloat16; fp16/fp32 run the weights' dtype)."""
    dtype = {"amp": torch.float16, "bf16": torch.bfloat16}.get(prec)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)
