"""Registry of dataset readers, looked up by DATASET.NAME."""

from __future__ import annotations

from dassl.utils import Registry

from .base_dataset import DatasetBase

DATASET_REGISTRY = Registry("DATASET")


def build_dataset(cfg) -> DatasetBase:
    """Instantiate the reader registered as ``cfg.DATASET.NAME`` (an unknown name lists the registered ones)."""
    reader = DATASET_REGISTRY.get(cfg.DATASET.NAME)
    if cfg.VERBOSE:
        print(f"Loading dataset: {cfg.DATASET.NAME}")
    return reader(cfg)
