"""A tiny Caltech101 on disk (real layout and split-file format) for end-to-end trainer tests."""

import json
import os

import numpy as np
from PIL import Image

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
