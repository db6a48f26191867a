"""Vendored OpenAI CLIP, which also runs open_clip checkpoints of OpenAI's architecture.

``clip.load_model`` gives the model and its ``Preprocessing``; ``clip.load``, ``clip.tokenize`` and
``clip.available_models`` are OpenAI's API.
"""

from .clip import available_models, load, load_model, load_state_dict, open_clip_tags, tokenize
from .errors import CheckpointError
from .preprocessing import Preprocessing

__all__ = ["CheckpointError", "Preprocessing", "available_models", "load", "load_model", "load_state_dict",
           "open_clip_tags", "tokenize"]
