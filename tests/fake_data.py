"""A tiny Caltech101 on disk (real layout and split-file format) and the arguments of tiny end-to-end runs on it."""

import json
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dassl.engine import build_trainer
from trainers import run_spec

CLASSES = ["airplane", "face", "leopard", "car_side", "golden_retriever", "sea_lion"]


def make_caltech101(root: str, per_split: tuple[int, int, int] = (4, 2, 3), size: int = 32) -> str:
    """Write <root>/caltech-101 with a few coloured images per class; returns root."""
    dataset_dir = os.path.join(root, "caltech-101")
    rng = np.random.default_rng(0)
    split = {"train": [], "val": [], "test": []}
    for label, name in enumerate(CLASSES):
        folder = os.path.join(dataset_dir, "101_ObjectCategories", name)
        os.makedirs(folder, exist_ok=True)
        base = rng.integers(0, 256, size=3)
        index = 0
        for part, count in zip(split, per_split):
            for _ in range(count):
                pixels = np.clip(base + rng.normal(0, 40, size=(size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(os.path.join(folder, f"image_{index:04d}.jpg"))
                split[part].append([f"{name}/image_{index:04d}.jpg", label, name])
                index += 1
    with open(os.path.join(dataset_dir, "split_zhou_Caltech101.json"), "w") as f:
        json.dump(split, f)
    return root


def image_folder(root, classes: list[str], seed: int = 0):
    """A DATASET.ROOT for ImageFolder: 6 random 32-pixel images per class; returns root."""
    rng = np.random.default_rng(seed)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / name / f"{i}.jpg")
    return root


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What every tiny end-to-end run shares: 32-pixel images for the tiny CLIP, no loader workers, 2 shots.
TINY_RUN = [
    "INPUT.SIZE", "(32, 32)",
    "DATALOADER.NUM_WORKERS", "0",
    "DATALOADER.TEST.BATCH_SIZE", "8",
    "TRAIN.PRINT_FREQ", "1",
    "DATASET.NUM_SHOTS", "2",
]  # fmt: skip


def atprompt_switch(trainer: str) -> list[str]:
    """The option the original's scripts pass with an `*_ATP` trainer name, which alone does not turn ATPrompt on."""
    return ["TRAINER.ATPROMPT.USE_ATPROMPT", "True"] if trainer.endswith("_ATP") else []


def run_args(data_root: str, out, trainer: str, clip_path, config: str, *opts: str, extra=()) -> list[str]:
    """train.py arguments for a tiny run on the fake Caltech101; `config` is relative to configs/trainers."""
    return [
        "--root", str(data_root), "--seed", "1", "--trainer", trainer, "--output-dir", str(out),
        "--dataset-config-file", os.path.join(REPO, "configs/datasets/caltech101.yaml"),
        "--config-file", os.path.join(REPO, "configs/trainers", config),
        *extra, *TINY_RUN, "MODEL.BACKBONE.NAME", str(clip_path), *atprompt_switch(trainer), *opts,
    ]  # fmt: skip


def build_from(argv: list[str]):
    """The trainer train.py would build for these arguments (no training, no log)."""
    return build_trainer(run_spec.setup_cfg(run_spec.build_parser().parse_args(argv)))


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def perturb(module, seed: int = 1) -> None:
    """Move every trainable parameter off its initial value (a zero or identity initialisation can hide bugs)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn(p.shape, generator=generator))


def assert_round_trip(trained, fresh, folder) -> None:
    """Saving `trained` (off its initial values) and loading it into `fresh` gives identical logits."""
    perturb(trained.model)
    trained.save_model(0, str(folder))
    fresh.load_model(str(folder))
    with torch.no_grad():
        assert torch.equal(trained.model_inference(images(4)), fresh.model_inference(images(4)))


def assert_bf16_like_fp32(fp32, bf16) -> torch.Tensor:
    """With `fp32`'s weights, `bf16` gives finite fp32 logits close to `fp32`'s; returns the images it classified."""
    bf16.model.load_state_dict(fp32.model.state_dict())
    image = images(2)
    with torch.no_grad():
        reference, logits = fp32.model_inference(image), bf16.model_inference(image)
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    torch.testing.assert_close(logits, reference, atol=0.5, rtol=0.05)
    return image


def save_original_checkpoint(state: dict, folder, epoch: int) -> None:
    """`state` as the original's Dassl saved a model: `<folder>/model.pth.tar-<epoch>` (folder: the run's folder and
    the model's name), with the epoch and no optimiser or scheduler state."""
    Path(folder).mkdir(parents=True)
    checkpoint = {"state_dict": state, "epoch": epoch, "optimizer": None, "scheduler": None}
    torch.save(checkpoint, Path(folder) / f"model.pth.tar-{epoch}")


def original_anchor_file(path, width: int = 64, seed: int = 7):
    """An AnchorOPT anchor in the original's stage-I checkpoint format (`anchor_ctx_1`, fp16) of one token; `path`."""
    tokens = torch.randn(1, width, generator=torch.Generator().manual_seed(seed))
    torch.save({"state_dict": {"anchor_ctx_1": tokens.half()}, "epoch": 10}, path)
    return path
