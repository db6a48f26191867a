"""The output folder of one run: held by that run alone, and cleaned of what that run alone wrote.

- One run per folder: an advisory lock (`.run.lock`, flock) is held for the run's life, so a second run into the
  same folder stops at once, naming the folder and the run that holds it. The lock goes with the process, even
  when it is killed.
- Temporary files that a dead run left behind (`.*.tmp` of atomic writes) are removed when the next run starts.
- A run that fails before it saved a checkpoint removes its own log and the folders it created, if nothing else
  is in them; a run that saved one keeps its log, with the error at the end, so it can be resumed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sys
import time
from pathlib import Path

from dassl.utils import close_logger, setup_logger
from dassl.utils.errors import UserError

LOCK_FILE = ".run.lock"
# How the log of a run that failed or was interrupted after saving a checkpoint ends (`close_failed`).
FAILURE_LINE = "error: "


def ended_in_failure(log: str) -> bool:
    """Whether a run's log ends with the line of a failure or an interrupt: a result printed before it is not the
    result of a finished run (the run stopped before writing its record)."""
    lines = log.rstrip("\n").splitlines()
    return bool(lines) and lines[-1].startswith(FAILURE_LINE)


def checkpoint_folders(folder: str) -> list[str]:
    """The sub-folders of `folder` that hold training checkpoints (a Dassl `checkpoint` pointer or model files): one
    per model a training run registered."""
    if not os.path.isdir(folder):
        return []
    return [name for name in sorted(os.listdir(folder)) if os.path.isdir(os.path.join(folder, name))
            and any(f == "checkpoint" or f.startswith("model") and ".pth" in f
                    for f in os.listdir(os.path.join(folder, name)))]


def writable_folder(folder: str, flag: str = "--output-dir") -> None:
    """Create `folder` (and its parents); a path that cannot hold a folder is one clear error."""
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        why = "a file is in the way" if isinstance(err, (FileExistsError, NotADirectoryError)) else err.strerror
        raise UserError(f"{flag} {folder}: cannot create the folder ({why}); choose another {flag}") from err


class RunFolder:
    def __init__(self) -> None:
        self.folder: str | None = None
        self.log_path: str | None = None
        self.created: list[str] = []  # folders this run created, deepest first
        self._lock = None
        self._started = 0.0

    def open(self, output_dir: str | None) -> None:
        """Take the folder (create it, lock it, clear stale temporary files) and start its log."""
        if not output_dir:
            self.log_path = setup_logger(None)
            return
        folder = os.path.abspath(output_dir)
        parent = folder
        while not os.path.exists(parent):
            self.created.append(parent)
            parent = os.path.dirname(parent)
        writable_folder(folder)
        self.folder, self._started = folder, time.time()
        self._take_lock()
        for stale in Path(folder).rglob(".*.tmp"):
            if not _writer_alive(stale):  # a live writer may be an evaluation in a sub-folder
                stale.unlink(missing_ok=True)
        self.log_path = setup_logger(folder)

    def _take_lock(self) -> None:
        path = os.path.join(self.folder, LOCK_FILE)
        try:
            handle = open(path, "a+")
        except OSError as err:
            raise UserError(f"--output-dir {self.folder}: cannot write there ({err.strerror}); choose a folder "
                            "you can write to") from err
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise UserError(f"--output-dir {self.folder} is in use by another run ({holder}): wait until it "
                            "ends, or choose another --output-dir") from err
        handle.truncate(0)
        handle.write(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(sys.argv)}\n")
        handle.flush()
        self._lock = handle

    def close(self) -> None:
        close_logger()
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None

    def close_failed(self, message: str) -> None:
        """After a failure: keep the log (with the error) if the run saved a checkpoint, else remove what the run
        wrote itself and the folders it created, unless something else is in them."""
        close_logger()
        if self.log_path is not None:
            with contextlib.suppress(OSError):  # a full disk must not hide the error being reported
                if self._saved_a_checkpoint():
                    with open(self.log_path, "a") as f:
                        f.write(f"{FAILURE_LINE}{message}\n")
                else:
                    os.remove(self.log_path)
                    self._remove_created_folders()
        self.close()
        self.log_path = None

    def _saved_a_checkpoint(self) -> bool:
        """Whether this run wrote a checkpoint (its pointer file changed since the run took the folder)."""
        return self.folder is not None and any(
            pointer.stat().st_mtime >= self._started for pointer in Path(self.folder).glob("*/checkpoint"))

    def _remove_created_folders(self) -> None:
        if self.created:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(self.created[0], LOCK_FILE))
        for folder in self.created:
            try:
                os.rmdir(folder)
            except OSError:  # not empty: another run's (or the user's) files are there
                return


def _writer_alive(temporary: Path) -> bool:
    """Whether the process that is writing `temporary` (an atomic write's `.<name>.<pid>.<id>.tmp`) still runs."""
    try:
        pid = int(temporary.name.split(".")[-3])
        os.kill(pid, 0)
    except (IndexError, ValueError, ProcessLookupError):
        return False
    except PermissionError:  # another user's process
        return True
    return True
