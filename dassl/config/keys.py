"""Reading and writing a config value by its dotted key ("OPTIM.LR"), as the command line names it."""

from __future__ import annotations

from typing import Any

from yacs.config import CfgNode


def get_key(node: CfgNode, key: str) -> Any:
    """The value at the dotted `key` below `node`; KeyError when the config has no such key."""
    for part in key.split("."):
        if not isinstance(node, CfgNode) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def set_key(node: CfgNode, key: str, value: Any) -> None:
    """Set the existing dotted `key` below `node` to `value` (no type check: the caller's value is final)."""
    *path, leaf = key.split(".")
    for part in path:
        node = node[part]
    node[leaf] = value
