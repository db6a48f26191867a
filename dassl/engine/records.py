"""What a run is: the settings that decide its numbers, their fingerprint, and the record it leaves (results.json).

Every run writes `results.json` beside its log: what ran (trainer, dataset, seed, shots, classes, backbone and the
checksum of its weights, the prompt's attributes and soft tokens, the evaluated checkpoint), how it ended and its
final metrics, and the fingerprint of its settings. Reuse, resume, evaluation and the result tables decide from
the fingerprint, never from folder names alone: two runs with one fingerprint are the same experiment.

The fingerprint covers the whole config except `NOT_DECIDING` (where outputs go, how often to print, how many loader
workers, ...), plus, for an evaluation, the checksums of the checkpoint files it loads. Loader workers change
which random augmentations are drawn, not what is measured, so they are left out with the rest.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from typing import Any

from yacs.config import CfgNode

from dassl.utils import atomic_write

RECORD_FILE = "results.json"
FORMAT = 1

# Keys that never change a run's numbers.
NOT_DECIDING = (
    "OUTPUT_DIR", "RESUME", "VERBOSE", "USE_CUDA",
    "DATASET.ROOT", "DATASET.CACHE_DIR", "MODEL.BACKBONE.DOWNLOAD_ROOT",
    "DATALOADER.NUM_WORKERS", "DATALOADER.PERSISTENT_WORKERS", "DATALOADER.TEST.BATCH_SIZE",
    "TRAIN.PRINT_FREQ", "TRAIN.CHECKPOINT_FREQ",
    "TEST.PER_CLASS_RESULT", "TEST.COMPUTE_CMAT", "TEST.NO_TEST",
    "TRAINER.ATTRIBUTE_SEARCH.CHUNK_SIZE", "FEATURE_CACHE.ENABLED", "FEATURE_CACHE.DIR",
)  # fmt: skip
# What only training reads: an evaluation of a checkpoint does not depend on it.
TRAINING_ONLY = ("OPTIM.", "TRAIN.", "DATALOADER.TRAIN_X.", "DATALOADER.TRAIN_U.", "DATALOADER.K_TRANSFORMS")


def _flatten(node: CfgNode, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in node.items():
        if isinstance(value, CfgNode):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = list(value) if isinstance(value, tuple) else value
    return flat


def settings_of(cfg: CfgNode, kind: str) -> dict[str, Any]:
    """The config keys that decide the numbers of a run of `kind` ("train" or "eval"), flattened."""
    return {key: value for key, value in _flatten(cfg).items()
            if key not in NOT_DECIDING and not (kind == "eval" and key.startswith(TRAINING_ONLY))}


def repeatable(settings: dict[str, Any]) -> bool:
    """Whether a run of these settings gives the same numbers again: only with a fixed seed (SEED -1 fixes none)."""
    return settings.get("SEED", 0) >= 0


def fingerprint(kind: str, settings: dict[str, Any], model: dict[str, str] | None = None) -> str:
    """The hash of what decides a run's numbers; `model`: the checksums of the checkpoint files an evaluation loads.
    A run without a fixed seed gets one that no other run has: no rerun gives its numbers."""
    content = {"kind": kind, "settings": settings, "model": model or {}}
    if not repeatable(settings):
        content["unrepeatable"] = secrets.token_hex(16)
    payload = json.dumps(content, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def experiment_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """A run's settings less its seed: what the seeds of one experiment share."""
    return {k: v for k, v in settings.items() if k != "SEED"}


def setting_fingerprint(identity: dict) -> str:
    """The fingerprint of a run's experiment, whatever its seed and checkpoint: the runs of one table cell share it
    (an evaluation is paired with its training runs through the training record's)."""
    return fingerprint(identity["kind"], experiment_settings(identity["settings"]))


def differences(before: dict[str, Any], after: dict[str, Any], limit: int = 6) -> list[str]:
    """"KEY: old -> new" for every key whose value differs (or exists on one side only), sorted."""
    def shown(settings: dict[str, Any], key: str) -> str:
        return repr(settings[key]) if key in settings else "<unset>"

    keys = sorted(k for k in before.keys() | after.keys() if shown(before, k) != shown(after, k))
    lines = [f"{k}: {shown(before, k)} -> {shown(after, k)}" for k in keys]
    return lines[:limit] + ([f"... and {len(lines) - limit} more"] if len(lines) > limit else [])


def read_record(folder: str) -> dict | None:
    """The run record in `folder`, or None when there is none (or it is not one: a damaged file is treated as none,
    since the run it describes cannot be trusted to have finished)."""
    path = os.path.join(folder, RECORD_FILE)
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("format") == FORMAT else None


def write_record(folder: str, record: dict) -> None:
    """Write `folder/results.json` atomically (a reader never sees half a record)."""
    text = json.dumps({"format": FORMAT, **record}, indent=2, sort_keys=True, default=str)

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text + "\n")

    atomic_write(os.path.join(folder, RECORD_FILE), write)
