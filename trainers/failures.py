"""What train.py does when a run fails: one clear message for a bad input, and no partial outputs left behind.

A bad input (missing data or weights, an unknown name or config key, a checkpoint that does not fit, ...) is raised
as a `UserError` whose message names the input and the fix; `user_error_message` tells those apart from bugs, which
keep their traceback. `RunOutputs` removes what a run created when it fails before saving a checkpoint.
"""

from __future__ import annotations

import os
import shutil

import torch
from yacs.config import CfgNode

from dassl.utils import close_logger, setup_logger
from dassl.utils.errors import UserError


class RunOutputs:
    """The log (and folders) a run creates, so that a run that fails before saving a checkpoint leaves nothing behind.

    Once a checkpoint exists the log stays beside it: it tells how far the run got, and the run can be resumed.
    """

    def __init__(self) -> None:
        self.log_path: str | None = None
        self.created: list[str] = []  # folders this run created for its log, deepest first

    def open_log(self, output_dir: str | None) -> None:
        folder = os.path.abspath(output_dir) if output_dir else None
        while folder and not os.path.exists(folder):
            self.created.append(folder)
            folder = os.path.dirname(folder)
        self.log_path = setup_logger(output_dir)

    def close_failed(self, message: str) -> None:
        """Close the log after a failure: note the error in it if a checkpoint was saved, else remove it."""
        if self.log_path is None:
            return
        close_logger()
        with open(self.log_path) as f:
            saved = "Checkpoint saved to" in f.read()
        if saved:
            with open(self.log_path, "a") as f:
                f.write(f"error: {message}\n")
        elif self.created:  # the folder is new, so all of it is this run's
            shutil.rmtree(self.created[0], ignore_errors=True)
            for parent in self.created[1:]:
                try:
                    os.rmdir(parent)
                except OSError:  # another run's files are there
                    break
        else:
            os.remove(self.log_path)
        self.log_path = None


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
