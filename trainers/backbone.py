"""The frozen CLIP every trainer builds on: loading it from the config, its precision, and the checks it implies."""

from __future__ import annotations

import torch
from yacs.config import CfgNode

from clip.clip import load_model, weights_sha256
from clip.errors import CheckpointError
from clip.model import CLIP, convert_weights, infer_config
from clip.preprocessing import Preprocessing
from dassl.utils.errors import UserError

PRECISIONS = ("fp16", "fp32", "amp", "bf16")


def load_clip(cfg: CfgNode) -> tuple[CLIP, Preprocessing]:
    """CLIP on the CPU from `MODEL.BACKBONE.NAME` (an OpenAI name, an open_clip tag or a file; docs/BACKBONES.md) in
    its checkpoint's precision (OpenAI's fp16 layout for OpenAI's releases, fp32 for fp32 weights), and the
    preprocessing its checkpoint was trained with."""
    root = cfg.MODEL.BACKBONE.get("DOWNLOAD_ROOT", "") or None
    try:
        model, preprocessing = load_model(cfg.MODEL.BACKBONE.NAME, download_root=root)
    except CheckpointError as err:
        raise UserError(f"MODEL.BACKBONE.NAME {cfg.MODEL.BACKBONE.NAME}: {err}") from err
    return model.eval(), preprocessing


def backbone_identity(cfg: CfgNode) -> dict[str, str]:
    """The backbone's name and the checksum of its weights, which records and checkpoints keep: another CLIP of the
    same sizes must never pass for the one a prompt was trained on."""
    root = cfg.MODEL.BACKBONE.get("DOWNLOAD_ROOT", "") or None
    return {"name": cfg.MODEL.BACKBONE.NAME, "sha256": weights_sha256(cfg.MODEL.BACKBONE.NAME, root)}


def check_input(cfg: CfgNode, preprocessing: Preprocessing) -> None:
    """The images must have the resolution the image encoder was trained at; other normalisation statistics or
    interpolation than the checkpoint's run, but rarely on purpose, so they are pointed out, and so is a checkpoint
    trained on squashed images, which the test transform (shorter side, centre crop) does not reproduce."""
    size, name = preprocessing.size, cfg.MODEL.BACKBONE.NAME
    if cfg.INPUT.SIZE[0] != size:
        raise UserError(
            f"INPUT.SIZE is {tuple(cfg.INPUT.SIZE)} but {name} takes {size}x{size} "
            f"images: set INPUT.SIZE \"({size}, {size})\""
        )
    given = (tuple(cfg.INPUT.PIXEL_MEAN), tuple(cfg.INPUT.PIXEL_STD))
    if any(abs(a - b) > 1e-6 for a, b in zip((*given[0], *given[1]), (*preprocessing.mean, *preprocessing.std))):
        print(f"Warning: INPUT.PIXEL_MEAN / PIXEL_STD are {list(given[0])} / {list(given[1])}, but "
              f"{name} was trained with {list(preprocessing.mean)} / {list(preprocessing.std)}: "
              f"set INPUT.PIXEL_MEAN \"{list(preprocessing.mean)}\" INPUT.PIXEL_STD \"{list(preprocessing.std)}\"")
    if cfg.INPUT.INTERPOLATION != preprocessing.interpolation:
        print(f"Warning: INPUT.INTERPOLATION is {cfg.INPUT.INTERPOLATION}, but {name} was trained with "
              f"{preprocessing.interpolation} resizing: set INPUT.INTERPOLATION {preprocessing.interpolation}")
    if preprocessing.resize_mode == "squash":
        print(f"Note: {name} was trained on images squashed to {size}x{size} (resize_mode squash); the test "
              "transform here resizes the shorter side and crops the centre instead")


def resolve_precision(prec: str, device: torch.device) -> str:
    """The precision that will actually run: fp16 and amp need a GPU, so CPU runs use fp32 instead."""
    if prec not in PRECISIONS:
        raise UserError(f"PREC must be one of {', '.join(PRECISIONS)}, got '{prec}'")
    if device.type == "cpu" and prec in ("fp16", "amp"):
        print(f"Note: PREC '{prec}' needs a GPU; running in fp32 on the CPU")
        return "fp32"
    return prec


def load_clip_at(cfg: CfgNode, prec: str) -> CLIP:
    """`load_clip`, checked against INPUT.SIZE, at the precision a run asks for: OpenAI's fp16 layout for `fp16` (fp32
    weights are rounded, as the original did), else fp32, which holds any checkpoint's weights exactly (amp and bf16
    autocast over them)."""
    clip_model, preprocessing = load_clip(cfg)
    check_input(cfg, preprocessing)
    if prec == "fp16":
        convert_weights(clip_model)
        return clip_model
    return clip_model.float()


def autocast(prec: str, device: torch.device):
    """The autocast context for a precision (amp: fp16, bf16: bfloat16; fp16/fp32 run the weights' dtype)."""
    dtype = {"amp": torch.float16, "bf16": torch.bfloat16}.get(prec)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)



def replay_clip_construction(clip_model: CLIP) -> None:
    """Draw the random numbers that building another CLIP of this architecture draws (its initialisation), and
    drop it: for methods whose original loaded a second copy of CLIP at this point (KgCoOp)."""
    CLIP(**infer_config(clip_model.state_dict()))
