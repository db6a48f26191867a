"""What train.py says when a run fails: one clear message for a bad input, the traceback for a bug.

A bad input (missing data or weights, an unknown name or config key, a checkpoint that does not fit, ...) is raised
as a `UserError` whose message names the input and the fix; `user_error_message` tells those apart from bugs, and
also explains the faults of the machine that the user can fix (out of memory, a full or read-only disk).
"""

from __future__ import annotations

import errno
import os

import torch
from yacs.config import CfgNode

from dassl.utils.errors import UserError

# Faults of the disk or of the path: errno -> what to do about it.
DISK_FAULTS = {
    errno.ENOSPC: "free some space or write elsewhere",
    errno.EDQUOT: "free some of your quota or write elsewhere",
    errno.EROFS: "the file system is read-only: write elsewhere",
    errno.EACCES: "you may not write there: write elsewhere or change the permissions",
    errno.EPERM: "you may not write there: write elsewhere or change the permissions",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.EISDIR: "the path is a folder, not a file: choose another path",
}


def disk_fault_message(err: OSError) -> str | None:
    """One line for a write that the disk or the path refused; earlier checkpoints are never touched by it."""
    if err.errno not in DISK_FAULTS:
        return None
    where = err.filename or "a file of the run"
    return (f"{where}: {os.strerror(err.errno)}; {DISK_FAULTS[err.errno]} (--output-dir, DATASET.CACHE_DIR). "
            "Files saved before are intact.")


def user_error_message(err: BaseException, cfg: CfgNode | None) -> str | None:
    """The message of an error the user can fix (a `UserError`, running out of GPU memory, a full or read-only
    disk, a data-loader worker killed from outside), or None for a bug, which keeps its traceback."""
    if isinstance(err, torch.OutOfMemoryError) and cfg is not None:
        train_batch, test_batch = cfg.DATALOADER.TRAIN_X.BATCH_SIZE, cfg.DATALOADER.TEST.BATCH_SIZE
        return (f"{str(err).splitlines()[0]}\nOut of GPU memory: lower DATALOADER.TRAIN_X.BATCH_SIZE (now "
                f"{train_batch}) for training or DATALOADER.TEST.BATCH_SIZE (now {test_batch}) for testing; the "
                "attribute search also takes TRAINER.ATTRIBUTE_SEARCH.CHUNK_SIZE (prompts per text-encoder call, "
                "0 = all at once). PREC fp16, amp or bf16 need less memory than fp32.")
    if isinstance(err, OSError):
        return disk_fault_message(err)
    if isinstance(err, RuntimeError) and str(err).startswith("DataLoader worker (pid"):
        return (f"{str(err).splitlines()[0]} A loader worker was stopped from outside, most often by the system "
                "when memory ran out: lower DATALOADER.NUM_WORKERS or the batch size, then rerun the same command to "
                "resume from the last checkpoint.")
    return err.message if isinstance(err, UserError) else None
