"""What train.py says when a run fails: one clear message for a bad input, the traceback for a bug.

A bad input (missing data or weights, an unknown name or config key, a checkpoint that does not fit, ...) is raised
as a `UserError` whose message names the input and the fix; `user_error_message` tells those apart from bugs, and
also explains the faults of the machine that the user can fix (out of memory, a full or read-only disk).
"""

from __future__ import annotations

import torch
from yacs.config import CfgNode

from dassl.utils.errors import UserError


def user_error_message(err: BaseException, cfg: CfgNode | None) -> str | None:
    """The message of an error the user can fix (a `UserError`, or running out of GPU memory), or None for a bug,
    which keeps its traceback."""
    if isinstance(err, torch.OutOfMemoryError) and cfg is not None:
        train_batch, test_batch = cfg.DATALOADER.TRAIN_X.BATCH_SIZE, cfg.DATALOADER.TEST.BATCH_SIZE
        return (f"{str(err).splitlines()[0]}\nOut of GPU memory: lower DATALOADER.TRAIN_X.BATCH_SIZE (now "
                f"{train_batch}) for training or DATALOADER.TEST.BATCH_SIZE (now {test_batch}) for testing; the "
                "attribute search also takes TRAINER.ATTRIBUTE_SEARCH.CHUNK_SIZE (prompts per text-encoder call, "
                "0 = all at once). PREC fp16, amp or bf16 need less memory than fp32.")
    return err.message if isinstance(err, UserError) else None
