"""Vendored OpenAI CLIP: ``clip.load``, ``clip.tokenize``, ``clip.available_models``."""

from .clip import available_models, load, load_state_dict, tokenize

__all__ = ["available_models", "load", "load_state_dict", "tokenize"]
