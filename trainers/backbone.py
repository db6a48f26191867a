"""The frozen CLIP every trainer builds on: loading it from the config, its precision, and the checks it implies."""

from __future__ import annotations

import copy
import hashlib
import os

import torch
from yacs.config import CfgNode

from clip.clip import load_model, weights_sha256
from clip.errors import CheckpointError
from clip.model import CLIP, convert_weights
from clip.preprocessing import Preprocessing
from dassl.utils.errors import UserError


def load_clip(cfg: CfgNode) -> tuple[CLIP, Preprocessing]:
    """CLIP on the CPU from `MODEL.BACKBONE.NAME` (an OpenAI name, an open_clip tag or a file; docs/BACKBONES.md) in
    its checkpoint's precision (OpenAI's fp16 layout for OpenAI's releases, fp32 for fp32 weights), and the
    preprocessing its checkpoint was trained with.

    A process that runs several jobs (tools/sweep.py's workers) reads each file once: the next job gets a copy of
    the same weights. Building CLIP draws random numbers (its initialisation, then overwritten), which the
    original drew too and which decide every later draw of a seed; a copy is therefore served only where the
    generator is in the state the first load started from, and leaves it in the state that load left."""
    root = cfg.MODEL.BACKBONE.get("DOWNLOAD_ROOT", "") or None
    name = cfg.MODEL.BACKBONE.NAME
    key = (name, root, _file_state(os.path.expanduser(name)), _rng_digest())
    if _LOADED.get("key") != key:
        try:
            model, preprocessing = load_model(name, download_root=root)
        except CheckpointError as err:
            raise UserError(f"MODEL.BACKBONE.NAME {name}: {err}") from err
        _LOADED.update(key=key, model=model, preprocessing=preprocessing, rng=torch.random.get_rng_state())
    torch.random.set_rng_state(_LOADED["rng"])
    return copy.deepcopy(_LOADED["model"]).eval(), _LOADED["preprocessing"]


_LOADED: dict = {}  # the last CLIP loaded in this process, and the random state its building left


def _rng_digest() -> str:
    return hashlib.sha256(torch.random.get_rng_state().numpy().tobytes()).hexdigest()


def _file_state(path: str) -> tuple | None:
    """A local file's size and modification time: a file replaced since it was read is read again."""
    if not os.path.isfile(path):
        return None
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns


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
