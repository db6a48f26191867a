"""The error of this package for checkpoints a user must fix: not found, not downloadable, unreadable or foreign."""


class CheckpointError(RuntimeError, ValueError):
    """A CLIP checkpoint that cannot be found, downloaded, read or built; the message says which, and what to do.

    A RuntimeError (what OpenAI's loader raised) and a ValueError (what a state dict of another architecture gave)."""
