"""What a run is: the settings and data that decide its numbers, their fingerprint, and the record it leaves.

Every run writes `results.json` beside its log: what ran (trainer, dataset, seed, shots, classes, backbone and the
checksum of its weights, the prompt's attributes and soft tokens, the evaluated checkpoint), how it ended and its
final metrics, the identity of the data it read, and the fingerprint of all that. Reuse, resume, evaluation and
the result tables decide from the fingerprint, never from folder names alone: two runs with one fingerprint are the
same experiment, and give the same numbers (a run without a fixed seed gets a fingerprint of its own).

The fingerprint covers the whole config except `NOT_DECIDING` (where outputs go, how often to print, how many loader
workers, ...), plus, for an evaluation, the checksums of the checkpoint files it loads, and the data identity
(dassl/data/identity.py). Loader workers change which random augmentations are drawn, not what is measured, so they
are left out with the rest.

A record that cannot be read, or lacks what a decision needs, is never taken for a finished run: `load_record`,
`identity_problem` and `result_problem` say what is wrong, and `reuse_decision` / `unusable_record` what the run
scripts do with the folder.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from yacs.config import CfgNode

from dassl.utils import atomic_write

RECORD_FILE = "results.json"
FORMAT = 2  # 2: records carry the identity of the data the run read
FORMATS = (1, 2)  # the formats read: 1 has no data identity, and is compared without one

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


def settings_of(cfg: CfgNode, kind: str, unread: Sequence[str] = ()) -> dict[str, Any]:
    """The config keys that decide the numbers of a run of `kind` ("train" or "eval"), flattened; `unread`: the
    keys (or nodes) its trainer never reads, such as other methods' nodes (trainers/method.py `unread_nodes`)."""
    skipped = tuple(unread) + tuple(f"{key}." for key in unread)
    return {key: value for key, value in _flatten(cfg).items()
            if key not in NOT_DECIDING and not (kind == "eval" and key.startswith(TRAINING_ONLY))
            and not (key in unread or key.startswith(skipped))}


def repeatable(settings: dict[str, Any]) -> bool:
    """Whether a run of these settings gives the same numbers again: only with a fixed seed (SEED -1 fixes none)."""
    seed = settings.get("SEED", 0)
    return isinstance(seed, int) and seed >= 0


def fingerprint(kind: str, settings: dict[str, Any], model: dict[str, str] | None = None,
                data: dict | None = None) -> str:
    """The hash of what decides a run's numbers; `model`: the checksums of the checkpoint files an evaluation loads
    (and of other input files), `data`: the identity of the data it reads (dassl/data/identity.py; None when its
    reader declares none). A run without a fixed seed gets one that no other run has: no rerun gives its numbers."""
    content = {"kind": kind, "settings": settings, "model": model or {}}
    if data is not None:
        content["data"] = data
    if not repeatable(settings):
        content["unrepeatable"] = secrets.token_hex(16)
    payload = json.dumps(content, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def identity_fingerprint(identity: dict, with_data: bool = True) -> str:
    """The fingerprint of a run's identity (kind, settings, model, inputs, data); `with_data` False: as a record
    written before data identities (format 1) has it."""
    data = identity.get("data") if with_data else None
    return fingerprint(identity["kind"], identity["settings"], {**identity["model"], **identity["inputs"]}, data)


def experiment_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """A run's settings less its seed: what the seeds of one experiment share."""
    return {k: v for k, v in settings.items() if k != "SEED"}


def setting_fingerprint(identity: dict) -> str:
    """The fingerprint of a run's experiment, whatever its seed and checkpoint: the runs of one table cell share it
    (an evaluation is paired with its training runs through the training record's). Its data is the split the
    seeds share, not the few shots each seed draws."""
    data = identity.get("data")
    return fingerprint(identity["kind"], experiment_settings(identity["settings"]),
                       data={"split": data.get("split", {})} if data else None)


def differences(before: dict[str, Any], after: dict[str, Any], limit: int = 6) -> list[str]:
    """"KEY: old -> new" for every key whose value differs (or exists on one side only), sorted."""
    def shown(settings: dict[str, Any], key: str) -> str:
        return repr(settings[key]) if key in settings else "<unset>"

    keys = sorted(k for k in before.keys() | after.keys() if shown(before, k) != shown(after, k))
    lines = [f"{k}: {shown(before, k)} -> {shown(after, k)}" for k in keys]
    return lines[:limit] + ([f"... and {len(lines) - limit} more"] if len(lines) > limit else [])


def data_entries(data: dict | None) -> dict[str, str]:
    """A data identity's files and folders (paths under DATASET.ROOT) with their checksums, in one mapping."""
    return {name: checksum for part in (data or {}).values() for name, checksum in part.items()}


def data_differences(recorded: dict | None, now: dict | None) -> tuple[list[str], list[str]]:
    """What differs between the data a run read and the data there is now: (the files or folders whose content
    differs or that are new, those no longer there)."""
    before, after = data_entries(recorded), data_entries(now)
    changed = [f"the data: {name} {'changed' if name in before else 'is new'}"
               for name in sorted(after) if before.get(name) != after[name]]
    gone = [f"the data: {name} is not there now" for name in sorted(before) if name not in after]
    return changed, gone


# ----- reading records, and what they must hold ------------------------------------------------------------------
def load_record(folder: str) -> tuple[dict | None, str]:
    """The run record in `folder` and "", (None, "") when there is none, or (None, why) when its file cannot be
    read or is no record: such a file never counts as a finished run, nor as none."""
    path = os.path.join(folder, RECORD_FILE)
    if not os.path.lexists(path):
        return None, ""
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except OSError as err:
        return None, f"cannot be read ({err.strerror})"
    except ValueError as err:  # also a UnicodeDecodeError
        return None, f"is not valid JSON ({err})"
    if not isinstance(record, dict):
        return None, f"is no run record (it holds a JSON {type(record).__name__})"
    if record.get("format") not in FORMATS:
        return None, f"has format {record.get('format')!r}, which this version does not read"
    return record, ""


def read_record(folder: str) -> dict | None:
    """The run record in `folder`, or None when there is none or it cannot be read (`load_record` says why)."""
    return load_record(folder)[0]


_IDENTITY_FIELDS = {"status": str, "kind": str, "fingerprint": str, "settings": dict}
_RESULT_FIELDS = {"trainer": str, "dataset": str, "seed": int, "subsample": str, "setting": str, "metrics": dict}


def _field_problem(record: dict, fields: dict[str, type]) -> str:
    for key, kind in fields.items():
        if key not in record:
            return f"lacks its {key}"
        if not isinstance(record[key], kind) or isinstance(record[key], bool):
            return f"has {record[key]!r} as its {key}, not a {kind.__name__}"
    return ""


def identity_problem(record: dict) -> str:
    """What a record lacks to say which run it describes (its status, kind, fingerprint and settings, a source
    that is an object); "" when nothing."""
    problem = _field_problem(record, _IDENTITY_FIELDS)
    if not problem and not isinstance(record.get("source", {}), dict):
        problem = f"has {record['source']!r} as its source, not an object"
    if not problem and not _is_data_identity(record.get("data")):
        problem = f"has {record['data']!r} as its data, not an identity of the data it read"
    return problem


def _is_data_identity(data: Any) -> bool:
    """None (not recorded) or {part: {path: checksum}}."""
    return data is None or isinstance(data, dict) and all(
        isinstance(part, dict) and all(isinstance(v, str) for v in part.values()) for part in data.values())


def result_problem(record: dict) -> str:
    """What the record of a finished training or evaluation lacks to give a result (what ran, on which data and
    seed, its setting, a finite accuracy); "" when nothing, and for other records."""
    if record.get("status") != "finished" or record.get("kind") not in ("train", "eval"):
        return ""
    problem = _field_problem(record, _RESULT_FIELDS)
    if problem:
        return problem
    if "accuracy" not in record["metrics"]:
        return "has no accuracy"
    for name, value in record["metrics"].items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"has {value!r} as its {name}, not a number"
    return ""


# ----- what the run scripts do with a folder that holds a record ---------------------------------------------
@dataclass(frozen=True)
class Reuse:
    """What to do with a job whose folder holds a record: "skip" it, "run" it (`reason` says why, as a note) or
    "refuse" it (`reason` is the error)."""

    action: str
    reason: str = ""


def unusable_record(kind: str, folder: str, problem: str) -> Reuse:
    """A record that cannot be read, or cannot say which run it describes, is never taken for a finished run. A
    training job runs train.py there, which resumes a run only with the settings, backbone and data it was trained
    with; an evaluation is refused, since what was evaluated there is unknown."""
    where = os.path.join(folder, RECORD_FILE)
    if kind == "train":
        return Reuse("run", f"{where} {problem}, so it cannot say whether the run there is this job's: running the "
                            "job, which resumes (or reuses) that run only with the settings and data it had")
    return Reuse("refuse", f"{where} {problem}, so what was evaluated there is unknown: set FORCE=1 to evaluate "
                           "there again (the record is replaced, the logs kept), or choose another OUTPUT")


def reuse_decision(kind: str, folder: str, record: dict, planned: dict) -> Reuse:
    """Whether the finished run that `record` describes is the job `planned` (train.py's run identity): skip it
    when it is and its record holds its result; otherwise refuse, naming what differs, or run the job again when
    its record lacks a result or some of the data it read is gone (the run then reads it anew)."""
    if not repeatable(planned["settings"]):
        return Reuse("run", f"{folder}: a job without a fixed seed (SEED -1) is never skipped, since no earlier "
                            "run gives its numbers")
    with_data = "data" in record  # format 1 records predate data identities: compared without one
    if record["fingerprint"] == identity_fingerprint(planned, with_data):
        problem = result_problem(record)
        if problem:
            return Reuse("run", f"{os.path.join(folder, RECORD_FILE)} {problem}: running the job again")
        return Reuse("skip")
    changed = differences(record["settings"], planned["settings"])
    if record.get("source", {}).get("files", planned["model"]) != planned["model"]:
        changed.append("the evaluated checkpoint (its files changed since)")
    changed += [f"the content of {path}" for path, checksum in planned["inputs"].items()
                if record.get("inputs", {}).get(path) != checksum]
    data_changed, data_gone = data_differences(record.get("data"), planned.get("data")) if with_data else ([], [])
    if not (changed or data_changed) and data_gone:
        return Reuse("run", f"{folder}: {'; '.join(data_gone)}: running the job, which makes it again from the same "
                            "seed (a training run is resumed only on the data it was trained on)")
    changed += data_changed + data_gone
    if not changed:  # e.g. a record edited by hand, or an unseeded run's
        changed = ["its fingerprint differs from this job's"]
    if kind == "train":  # train.py resumes a run only with its own settings, so FORCE=1 cannot help
        fix = "choose another OUTPUT, or move that folder away to train these settings there"
    else:
        fix = "set FORCE=1 to evaluate there anyway (the record is replaced, the logs kept), or choose another OUTPUT"
    return Reuse("refuse", f"{folder} holds a finished run of other settings ({'; '.join(changed)}): {fix}")


def write_record(folder: str, record: dict) -> None:
    """Write `folder/results.json` atomically (a reader never sees half a record)."""
    text = json.dumps({"format": FORMAT, **record}, indent=2, sort_keys=True, default=str)

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text + "\n")

    atomic_write(os.path.join(folder, RECORD_FILE), write)
