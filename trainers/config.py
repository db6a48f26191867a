"""The complete config of a run: Dassl's defaults, the plug-ins' and every method's node, and how files and
command-line options are merged into it.

Each method declares its own node (`TRAINER.<NODE>`, trainers/method.py); ATPrompt's and AnchorOPT's nodes are the
plug-ins' (trainers/atprompt.py, trainers/anchoropt.py); the original's keys that no method owns here are added by
trainers/original.py, which also moves them to the method's own node when a run is set up (`setup_cfg`).
"""

from __future__ import annotations

import ast
import difflib
import os
import re
import shlex

import yaml
from yacs.config import CfgNode as CN

from dassl.config import get_cfg_default
from dassl.utils.errors import UserError
from trainers import anchoropt, atprompt, method, original


def extend_cfg(cfg: CN) -> CN:
    """Add the trainers' nodes to Dassl's defaults: the shared switches, the plug-ins' nodes, every registered
    method's node and the original's keys."""
    # New: also make the random draws the original made and never used (attribute blocks beyond the K used, the
    # second CLIPs it built), so that a seed gives the original's numbers; False skips them, which changes the
    # per-seed numbers (not their distribution).
    cfg.TRAINER.ORIGINAL_DRAWS = True
    cfg.TRAINER.ATPROMPT = atprompt.config_node()
    cfg.TRAINER.ANCHOROPT = anchoropt.config_node()
    for node, keys in method.config_nodes().items():
        cfg.TRAINER[node] = keys
    original.add_original_keys(cfg)
    # New: where named CLIP weights are cached ("" = ~/.cache/clip; open_clip tags: the Hugging Face cache).
    cfg.MODEL.BACKBONE.DOWNLOAD_ROOT = ""
    return cfg


def get_cfg() -> CN:
    """Dassl defaults plus the trainer nodes: the complete, unfrozen default config."""
    return extend_cfg(get_cfg_default())


def setup_cfg(files: list[tuple[str, str]], flags: dict[str, object], opts: list[str]) -> tuple[CN, list[str]]:
    """The frozen config of a run and notes for its log: defaults, then the yaml `files` ((path, flag) pairs, in
    order), then the values of command-line flags (`flags`: key -> value), then the `KEY VALUE` options (last wins).
    The original's keys given for a method that owns them under its own node are moved there."""
    cfg = get_cfg()
    given: list[str] = []  # the keys set, in order
    for path, flag in files:
        if path:
            given += merge_file(cfg, path, flag)
    for key, value in flags.items():
        cfg.merge_from_list([key, value])
        given.append(key)
    given += merge_options(cfg, opts)
    notes = resolve_keys(cfg, {key: place for place, key in enumerate(given)})
    cfg.freeze()
    return cfg, notes


def resolve_keys(cfg: CN, given: dict[str, int]) -> list[str]:
    """Move the original's keys to the run's method (trainers/original.py) and say which given keys it never reads."""
    from dassl.engine import TRAINER_REGISTRY  # the registry holds every method once trainers/ is imported

    if not cfg.TRAINER.NAME or cfg.TRAINER.NAME not in TRAINER_REGISTRY:
        return []
    trainer = TRAINER_REGISTRY.get(cfg.TRAINER.NAME)
    card = method.card_of(trainer)
    if card is None:
        return []
    owners = {c.node: c.name for _, c in method.methods() if c.config is not None}
    done = original.resolve_original_keys(cfg, given, trainer.__name__, (card.node, *card.reads), owners)
    return [f"Note: {note}" for note in done.notes] + [f"Note: the original's key {m}" for m in done.moved]


# Merging with errors that name the key, where it came from, the expected type and an example.
def _decode(value):
    """A command-line value as yacs reads it: a Python literal when it parses as one, else the string."""
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def _config_keys(node: CN, prefix: str = "") -> list[str]:
    keys = []
    for name, value in node.items():
        keys += _config_keys(value, f"{prefix}{name}.") if isinstance(value, CN) else [prefix + name]
    return keys


def _config_value(node: CN, key: str):
    """The value at a dotted key; KeyError when there is none."""
    for part in key.split("."):
        if not isinstance(node, CN) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def _unknown_key(cfg: CN, key: str, source: str) -> str:
    if key.startswith("--"):
        return f"{key} is a flag but comes after the KEY VALUE config options: put every --flag before them"
    keys = _config_keys(cfg)
    leaf = key.rsplit(".", 1)[-1].upper()
    close = [k for k in keys if k.rsplit(".", 1)[-1] == leaf]
    close += [k for k in difflib.get_close_matches(key.upper(), keys, n=3, cutoff=0.6) if k not in close]
    hint = f" Did you mean {' or '.join(close[:3])}?" if close else ""
    return (f"unknown config key {key} ({source}).{hint} Every key is listed with its default in "
            "dassl/config/defaults.py, trainers/atprompt.py, trainers/anchoropt.py and each method's module.")


_TYPE_NAMES = {bool: "True or False", int: "an integer", float: "a float", str: "a string", tuple: "a tuple",
               list: "a list"}


def _shell_form(value) -> str:
    if isinstance(value, (list, tuple)):
        return f'"{value!r}"'
    if isinstance(value, str):
        return shlex.quote(value) if value else '"some text"'
    return str(value)


def _wrong_type(key: str, default, given, source: str) -> str:
    if isinstance(default, CN):
        keys = ", ".join(_config_keys(default, key + "."))
        return f"{key} ({source}) is a group of keys, not a key: set one of {keys}"
    kind = type(default)
    example = f"{given}.0" if kind is float and type(given) is int else _shell_form(default)
    return (f"config key {key} ({source}) takes {_TYPE_NAMES.get(kind, kind.__name__)}, not the "
            f"{type(given).__name__} {given!r}: write e.g. {key} {example}")


def _read_original_ctx_init(loaded: CN) -> None:
    """The original's KgCoOp config says `CTX_INIT: True`, which its code read as "a photo of a" (False: none)."""
    coop = loaded.get("TRAINER", CN()).get("COOP", CN())
    if isinstance(coop.get("CTX_INIT"), bool):
        coop.CTX_INIT = "a photo of a" if coop.CTX_INIT else ""


def merge_file(cfg: CN, path: str, flag: str) -> list[str]:
    """Merge a yaml config file and return the keys it sets; a bad key or value is named with the file it comes
    from."""
    if not os.path.isfile(path):
        raise UserError(f"{flag} {path}: no such file")
    source = f"in {flag} {path}"
    try:
        with open(path) as f:
            loaded = CN.load_cfg(f)
        _read_original_ctx_init(loaded)
        cfg.merge_from_other_cfg(loaded)
        return _config_keys(loaded)
    except yaml.YAMLError as err:
        raise UserError(f"{flag} {path} is not valid YAML: {err}") from err
    except (KeyError, ValueError) as err:
        match = re.search(r"config key: ([\w.]+)", str(err))  # yacs names the key at the end of both errors
        if match is None:
            raise
        key = match.group(1)
        try:
            default = _config_value(cfg, key)
        except KeyError:
            raise UserError(_unknown_key(cfg, key, source)) from err
        with open(path) as f:
            given = _decode(_config_value(CN.load_cfg(f), key))
        raise UserError(_wrong_type(key, default, given, source)) from err


def merge_options(cfg: CN, opts: list[str]) -> list[str]:
    """Merge the trailing `KEY VALUE` pairs one at a time, so that an error names its key; return the keys."""
    for i in range(0, len(opts), 2):
        key = opts[i]
        try:
            default = _config_value(cfg, key)
        except KeyError:
            raise UserError(_unknown_key(cfg, key, "on the command line")) from None
        if i + 1 == len(opts):
            raise UserError(f"config options come as KEY VALUE pairs, but {key} has no value")
        try:
            cfg.merge_from_list([key, opts[i + 1]])
        except ValueError as err:  # yacs refuses a value of another type than the default
            raise UserError(_wrong_type(key, default, _decode(opts[i + 1]), "on the command line")) from err
    return list(opts[::2])
