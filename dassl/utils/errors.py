"""The one exception type for problems the user can fix.

Code anywhere in the project raises `UserError` with a message that names the bad input and the fix; the entry
points (train.py and the tools) print it as one `error:` line and exit with status 2. Any other exception is a bug
and keeps its traceback.
"""

from __future__ import annotations

# How torch re-raises an exception from a data-loader worker: the message holds the worker's traceback as text, and
# the original message follows the exception's qualified name on its last lines.
_WORKER_MARK = "\nOriginal Traceback"


class UserError(Exception):
    """A bad input: missing data or weights, an unknown name or key, a setting that does not fit, ...

    `message` is the text to show. An error raised in a data-loader worker reaches the main process as a new
    UserError whose text is the worker's whole traceback; `message` is then the original message alone.
    """

    def __init__(self, message: str = "") -> None:  # torch re-raises a worker's error as UserError(message=...)
        super().__init__(message)

    @property
    def message(self) -> str:
        text = str(self.args[0]) if self.args else ""
        if _WORKER_MARK not in text:
            return text
        marker = f"{type(self).__module__}.{type(self).__qualname__}: "
        tail = text.rsplit(marker, 1)
        return tail[-1].strip() if len(tail) == 2 else text
