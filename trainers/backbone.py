"""The frozen CLIP every trainer builds on: loading it from the config, its precision, and the checks it implies."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from yacs.config import CfgNode

from clip.clip import load_state_dict, tokenize
from clip.model import CLIP, build_model
from dassl.utils.errors import UserError

PRECISIONS = ("fp16", "fp32", "amp", "bf16")


def load_clip(cfg: CfgNode) -> CLIP:
    """CLIP on the CPU from `MODEL.BACKBONE.NAME` (a model name or a file), in OpenAI's fp16 layout."""
    root = cfg.MODEL.BACKBONE.get("DOWNLOAD_ROOT", "") or None
    try:
        state_dict = load_state_dict(cfg.MODEL.BACKBONE.NAME, download_root=root)
        model = build_model(state_dict)
    except (RuntimeError, ValueError) as err:  # clip/ explains a missing, corrupt or foreign checkpoint
        raise UserError(f"MODEL.BACKBONE.NAME {cfg.MODEL.BACKBONE.NAME}: {err}") from err
    return model.eval()


def check_input_size(cfg: CfgNode, clip_model: CLIP) -> None:
    """The images must have the resolution the image encoder was trained at."""
    resolution = clip_model.visual.input_resolution
    if cfg.INPUT.SIZE[0] != resolution:
        raise UserError(
            f"INPUT.SIZE is {tuple(cfg.INPUT.SIZE)} but {cfg.MODEL.BACKBONE.NAME} takes {resolution}x{resolution} "
            f"images: set INPUT.SIZE \"({resolution}, {resolution})\""
        )


def resolve_precision(prec: str, device: torch.device) -> str:
    """The precision that will actually run: fp16 and amp need a GPU, so CPU runs use fp32 instead."""
    if prec not in PRECISIONS:
        raise UserError(f"PREC must be one of {', '.join(PRECISIONS)}, got '{prec}'")
    if device.type == "cpu" and prec in ("fp16", "amp"):
        print(f"Note: PREC '{prec}' needs a GPU; running in fp32 on the CPU")
        return "fp32"
    return prec


def load_clip_at(cfg: CfgNode, prec: str) -> CLIP:
    """`load_clip`, checked against INPUT.SIZE, in fp32 unless the precision is OpenAI's fp16."""
    clip_model = load_clip(cfg)
    check_input_size(cfg, clip_model)
    return clip_model if prec == "fp16" else clip_model.float()


def autocast(prec: str, device: torch.device):
    """The autocast context for a precision (amp: fp16, bf16: bfloat16; fp16/fp32 run the weights' dtype)."""
    dtype = {"amp": torch.float16, "bf16": torch.bfloat16}.get(prec)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


@torch.no_grad()
def encode_prompts(clip_model: CLIP, prompts: list[str], prec: str, batch: int = 1000) -> torch.Tensor:
    """L2-normalised fp32 text features [len(prompts), E] of hand-written prompts, `batch` prompts per call."""
    device = clip_model.token_embedding.weight.device
    features = []
    for start in range(0, len(prompts), batch):
        with autocast(prec, device):
            features.append(clip_model.encode_text(tokenize(prompts[start : start + batch]).to(device)).float())
    return F.normalize(torch.cat(features), dim=-1)
