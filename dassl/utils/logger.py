"""Tee `sys.stdout` into a log file, the way Dassl writes `log.txt`."""

import contextlib
import os.path as osp
import sys
import time
from typing import Optional, TextIO

from .tools import mkdir_if_missing


class _Tee:
    """Forward every write to the console stream and to an open log file."""

    def __init__(self, console: TextIO, fpath: str):
        self.console = console
        self.fpath = fpath
        self.file = open(fpath, "w")

    def write(self, text: str) -> int:
        self.console.write(text)
        if not self.file.closed:
            try:
                self.file.write(text)
                # Flush per write so that the log is complete even if the process is killed.
                self.file.flush()
            except OSError:  # a full disk: stop logging to the file, and let the run report the fault
                self.close()
                raise
        return len(text)

    def flush(self) -> None:
        self.console.flush()
        if not self.file.closed:
            self.file.flush()

    def close(self) -> None:
        if not self.file.closed:
            with contextlib.suppress(OSError):  # what a full disk did not take is lost either way
                self.file.close()

    def isatty(self) -> bool:
        return self.console.isatty()

    def __getattr__(self, name: str):
        # Anything else (encoding, fileno, ...) behaves like the console stream.
        return getattr(self.console, name)


_active: Optional[_Tee] = None


def _log_path(output: str) -> str:
    fpath = output if output.endswith((".txt", ".log")) else osp.join(output, "log.txt")
    if not osp.exists(fpath):
        return fpath
    # Never overwrite an earlier log: add a timestamp (and a counter in the rare same-second case).
    stamped = fpath + time.strftime("-%Y-%m-%d-%H-%M-%S")
    candidate, n = stamped, 1
    while osp.exists(candidate):
        candidate, n = f"{stamped}-{n}", n + 1
    return candidate


def setup_logger(output: Optional[str] = None) -> Optional[str]:
    """Copy everything printed to stdout into `output/log.txt` (or the file `output` if it ends in .txt/.log).

    An existing log is kept and the new one is named `log.txt-YYYY-MM-DD-HH-MM-SS`. Calling this again
    replaces the previous tee instead of stacking a second one, so no line is ever written twice.
    Returns the log file path (None when `output` is None, which disables file logging).
    """
    close_logger()
    if not output:
        return None
    fpath = _log_path(output)
    mkdir_if_missing(osp.dirname(osp.abspath(fpath)))
    global _active
    _active = _Tee(sys.stdout, fpath)
    sys.stdout = _active
    return fpath


def close_logger() -> None:
    """Stop teeing: close the log file and give `sys.stdout` back to the console stream."""
    global _active
    if _active is None:
        return
    if sys.stdout is _active:
        sys.stdout = _active.console
    _active.close()
    _active = None
