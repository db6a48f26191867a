"""What train.py does when a run fails: one clear message for a bad input, and no partial outputs left behind.

A bad input (missing data or weights, an unknown name or config key, a checkpoint that does not fit, ...) is raised
by this project with a message that names the input and the fix; `user_error_message` tells those apart from bugs,
which keep their traceback. `RunOutputs` removes what a run created when it fails before saving a checkpoint.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import traceback

import torch
from yacs.config import CfgNode

from dassl.utils import close_logger, setup_logger

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


USER_ERRORS = (ValueError, LookupError, OSError, RuntimeError, FloatingPointError, pickle.UnpicklingError)


def _in_project(path: str) -> bool:
    path = os.path.abspath(path)
    return path.startswith(REPO + os.sep) and "site-packages" not in path


def _from_worker(text: str) -> str | None:
    """The message of an error a data-loader worker raised on purpose (torch re-raises it with the worker's
    traceback as text), else None."""
    lines = text.splitlines()
    frames = [i for i, line in enumerate(lines) if line.startswith('  File "')]
    if not frames:
        return None
    path = re.match(r'  File "(.+?)", line', lines[frames[-1]])
    rest = lines[frames[-1] + 1:]
    code = [line for line in rest if line.startswith(" ")]
    if path is None or not _in_project(path.group(1)) or not code or not code[0].strip().startswith("raise"):
        return None
    message = rest[len(code):]
    return "\n".join(message).split(": ", 1)[-1] if message else None


def user_error_message(err: BaseException, cfg: CfgNode | None) -> str | None:
    """The message of an error the user can fix, or None for a bug, which keeps its traceback.

    The project raises USER_ERRORS with a message that names the bad input and the fix. The same types raised
    anywhere else (inside a library, or by a slip in our code such as int("x")) are bugs, so a message is returned
    only when a `raise` statement in this repository raised the error.
    """
    if isinstance(err, torch.OutOfMemoryError) and cfg is not None:
        train_batch, test_batch = cfg.DATALOADER.TRAIN_X.BATCH_SIZE, cfg.DATALOADER.TEST.BATCH_SIZE
        return (f"{str(err).splitlines()[0]}\nOut of GPU memory: lower DATALOADER.TRAIN_X.BATCH_SIZE (now "
                f"{train_batch}) for training or DATALOADER.TEST.BATCH_SIZE (now {test_batch}) for testing; the "
                "attribute search also takes TRAINER.ATTRIBUTE_SEARCH.CHUNK_SIZE (prompts per text-encoder call, "
                "0 = all at once). PREC fp16, amp or bf16 need less memory than fp32.")
    if isinstance(err, NotImplementedError) or not isinstance(err, USER_ERRORS):
        return None
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    if "\nOriginal Traceback" in text:
        return _from_worker(text)
    frames = traceback.extract_tb(err.__traceback__)
    deliberate = frames and _in_project(frames[-1].filename) and (frames[-1].line or "").startswith("raise")
    return text if deliberate else None
