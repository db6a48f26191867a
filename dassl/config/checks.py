"""The valid ranges of the engine's numeric settings, checked before any work is done.

A value out of range would otherwise fail deep inside torch (a traceback), only at the epoch where it first applies
(after a checkpoint was saved, so that every rerun fails again), or not at all while measuring nonsense. Each rule
names the range in words, and a value outside it is one `UserError` line: `OPTIM.LR is -0.1: it takes ...`.

train.py runs `check_settings` on the merged config before it opens the output folder; the code that reads a key
checks it again with `check_node` / `check_value`, so tools that build a trainer without train.py get the same line.
A method checks its own keys in its trainer's `check_settings` (trainers/base.py), which train.py runs next.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from yacs.config import CfgNode

from dassl.config.keys import get_key
from dassl.utils.errors import UserError

# NumPy takes seeds from 0 to 2**32 - 1 (torch and Python's `random` take more): a larger seed cannot be honoured
# by all three, and a negative one other than -1 would silently leave every generator unseeded.
MAX_SEED = 2**32 - 1
NO_SEED = -1

Rule = tuple[Callable[[Any], bool], str]  # whether a value is valid, and the valid range in words


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def above_zero(example: str) -> Rule:
    return (lambda v: _number(v) and v > 0, f"a number above 0, e.g. {example}")


def at_least(low: int | float, what: str = "") -> Rule:
    check = _integer if isinstance(low, int) else _number
    return (lambda v: check(v) and v >= low, f"{'an integer' if check is _integer else 'a number'} of at least {low:g}"
            + (f" ({what})" if what else ""))


def in_unit_interval() -> Rule:
    return (lambda v: _number(v) and 0 <= v < 1, "a number from 0 up to (not including) 1")


# The engine keys whose values can be out of range, with their rules (the config's types are checked on merging).
ENGINE_RULES: dict[str, Rule] = {
    "SEED": (lambda v: _integer(v) and (v == NO_SEED or 0 <= v <= MAX_SEED),
             f"{NO_SEED} (no fixed seed: numbers that cannot be repeated) or a fixed seed from 0 to {MAX_SEED} "
             "(2**32 - 1, the largest NumPy takes)"),
    "OPTIM.LR": above_zero("0.002"),
    "OPTIM.WEIGHT_DECAY": at_least(0.0),
    "OPTIM.MOMENTUM": at_least(0.0),
    "OPTIM.SGD_DAMPNING": at_least(0.0),
    "OPTIM.RMSPROP_ALPHA": at_least(0.0),
    "OPTIM.ADAM_BETA1": in_unit_interval(),
    "OPTIM.ADAM_BETA2": in_unit_interval(),
    "OPTIM.BASE_LR_MULT": at_least(0.0),
    "OPTIM.GAMMA": above_zero("0.1"),
    "OPTIM.STEPSIZE": (lambda v: _integer(v) or (isinstance(v, (list, tuple)) and len(v) > 0 and all(map(_integer, v))),
                       "whole epochs, e.g. (20,) or (10, 20); -1 for single_step means MAX_EPOCH"),
    "OPTIM.WARMUP_CONS_LR": at_least(0.0),
    "OPTIM.WARMUP_MIN_LR": at_least(0.0),
    "DATALOADER.NUM_WORKERS": at_least(0, "0 reads the data in the main process"),
    "DATALOADER.K_TRANSFORMS": at_least(1),
    "DATALOADER.TRAIN_X.BATCH_SIZE": at_least(1),
    "DATALOADER.TRAIN_U.BATCH_SIZE": at_least(1),
    "DATALOADER.TEST.BATCH_SIZE": at_least(1),
    "DATASET.NUM_SHOTS": (lambda v: _integer(v) and (v == -1 or v >= 1),
                          "1 or more images per class, or -1 for all of them"),
    "TRAIN.PRINT_FREQ": at_least(1, "batches between log lines"),
    "TRAIN.CHECKPOINT_FREQ": at_least(0, "0 keeps the last epoch only"),
}
# What only a run that trains reads: an evaluation (--eval-only) never trains, so its epoch count does not matter.
TRAINING_RULES: dict[str, Rule] = {
    "OPTIM.MAX_EPOCH": at_least(1, "a run with no epoch would record the untrained prompt; evaluate with "
                                   "--eval-only instead"),
}
def check_value(key: str, value: Any, rules: dict[str, Rule] | None = None) -> None:
    """Raise the one-line error for `key` when `value` is outside its rule (keys without a rule pass)."""
    rule = (rules or {**ENGINE_RULES, **TRAINING_RULES}).get(key)
    if rule is not None and not rule[0](value):
        shown = list(value) if isinstance(value, tuple) else value
        raise UserError(f"{key} is {shown!r}: it takes {rule[1]}")


def check_node(node: CfgNode, prefix: str = "", training: bool = False) -> None:
    """Check the keys with a rule below the config node at `prefix` (`check_node(cfg.OPTIM, "OPTIM")`; the whole
    config with no prefix); `training` adds the rules of what only training reads."""
    rules = {**ENGINE_RULES, **(TRAINING_RULES if training else {})}
    start = f"{prefix}." if prefix else ""
    for key in rules:
        if key.startswith(start):
            try:
                value = get_key(node, key[len(start):])
            except KeyError:
                continue
            check_value(key, value, rules)


def check_settings(cfg: CfgNode, training: bool) -> None:
    """Check every engine key with a rule; `training`: the run will train."""
    check_node(cfg, training=training)
