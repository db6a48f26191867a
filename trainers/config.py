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
from dataclasses import dataclass
from typing import Any

import yaml
from yacs.config import CfgNode as CN

from dassl.config import get_cfg_default, get_key, set_key
from dassl.engine.records import TRAINING_ONLY
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


def setup_cfg(files: list[tuple[str, str]], flags: dict[str, object], opts: list[str],
              trained: Training | None = None) -> tuple[CN, list[str]]:
    """The frozen config of a run and notes for its log: defaults, then the yaml `files` ((path, flag) pairs, in
    order), then the values of command-line flags (`flags`: key -> value), then the `KEY VALUE` options (last wins).
    The original's keys given for a method that owns them under its own node are moved there. An evaluation of a
    trained model (`trained`) then takes the model's settings from its training run (`adopt_training`)."""
    cfg = get_cfg()
    given: list[tuple[str, str]] = []  # (key, where it was set), in the order set
    for path, flag in files:
        if path:
            given += [(key, f"{flag} {path}") for key in merge_file(cfg, path, flag)]
    for key, value in flags.items():
        set_key(cfg, key, value)  # as given: an --output-dir 2024 stays a folder name, not a number
        given.append((key, "on the command line"))
    given += [(key, "on the command line") for key in merge_options(cfg, opts)]
    notes, moved = resolve_keys(cfg, {key: place for place, (key, _) in enumerate(given)})
    sources = dict(given)
    sources |= {new: sources[old] for old, new in moved}
    if trained is not None:
        notes += adopt_training(cfg, sources, trained)
    cfg.freeze()
    return cfg, notes


def resolve_keys(cfg: CN, given: dict[str, int]) -> tuple[list[str], list[tuple[str, str]]]:
    """Move the original's keys to the run's method (trainers/original.py) and say which given keys it never reads;
    the notes, and the (original, own) keys moved."""
    from dassl.engine import TRAINER_REGISTRY  # the registry holds every method once trainers/ is imported

    if not cfg.TRAINER.NAME or cfg.TRAINER.NAME not in TRAINER_REGISTRY:
        return [], []
    trainer = TRAINER_REGISTRY.get(cfg.TRAINER.NAME)
    card = method.card_of(trainer)
    if card is None:
        return [], []
    owners = {c.node: c.name for _, c in method.methods() if c.config is not None}
    done = original.resolve_original_keys(cfg, given, trainer.__name__, (card.node, *card.reads), owners)
    notes = [f"Note: {note}" for note in done.notes] + [f"Note: the original's key {old} -> {new}"
                                                        for old, new in done.moved]
    return notes, done.moved


# ----- an evaluation takes the model's settings from its training run --------------------------------------------
@dataclass(frozen=True)
class Training:
    """What an evaluation takes from the run that trained its model: that run's settings (dassl/engine/records.py),
    the attribute words and soft-token counts it learned with (None: not recorded), and where they are recorded."""

    settings: dict[str, Any]
    attributes: list[tuple[str, int]] | None
    source: str


# What an evaluation decides itself: its data and seed, how it tests and loads, and AnchorOPT's anchor file when it
# reads one; what only training reads is left as given. Every other setting decides the model: the training run's.
EVALUATION_KEYS = ("SEED", "DATASET.", "TEST.", "DATALOADER.", *TRAINING_ONLY, *anchoropt.EVALUATION_KEYS)


def adopt_training(cfg: CN, given: dict[str, str], trained: Training) -> list[str]:
    """Give an evaluation's config the training run's value of every key that decides the model, whatever the
    defaults and files say; a key given (`given`: key -> where) with another value is refused, naming both. The
    seed, and without a dataset given the data, are the training run's unless given. Returns notes for the log."""
    conflicts = []
    for key, value in trained.settings.items():
        if not _taken_from_training(key, given):
            continue
        try:
            now = get_key(cfg, key)
        except KeyError:
            continue  # a key this version no longer has
        value = _recorded(now, value)
        if key in given and key in atprompt.LAYOUT_KEYS:
            continue  # compared by the attributes they give, below
        if key in given and not _same_setting(key, now, value, trained.settings):
            conflicts.append(f"{key} is {now!r} ({given[key]}) but {value!r} in training")
            continue
        set_key(cfg, key, value)
    conflicts += _attribute_conflicts(cfg, given, trained)
    if conflicts:
        raise UserError(f"{trained.source} was trained with other settings than given here "
                        f"({'; '.join(conflicts)}): leave them out, since an evaluation takes every setting of the "
                        "model from its training run, or evaluate another model")
    return _fix_attributes(cfg, trained) + [f"Note: the settings of the model are those of its training run "
                                            f"({trained.source})"]


def _taken_from_training(key: str, given: dict[str, str]) -> bool:
    """Whether an evaluation takes `key` from the training run: every key that decides the model; the seed unless
    one is given; the data (DATASET.*) when no dataset is given."""
    if key == "SEED" or key.startswith("DATASET."):
        return key not in given and (key == "SEED" or "DATASET.NAME" not in given)
    return not key.startswith(EVALUATION_KEYS)


def _recorded(default, value):
    """A recorded value in the config's type (records hold lists for tuples)."""
    return tuple(value) if isinstance(default, tuple) and isinstance(value, list) else value


def _same_setting(key: str, now, trained_value, settings: dict) -> bool:
    """Whether a given value is the training run's. AnchorOPT is on by its switch or by an original
    `<Method>_AnchorOPT` name, so the switch and the trainer name are compared by what they run: trainer names are
    the same when they name one method, and the one given turns AnchorOPT on only if training had it on."""
    if now == trained_value:
        return True
    trained_anchoropt = bool(settings.get("TRAINER.ANCHOROPT.USE_ANCHOROPT")) or original.name_turns_on_anchoropt(
        settings.get("TRAINER.NAME", ""))
    if key == "TRAINER.ANCHOROPT.USE_ANCHOROPT":
        return bool(now) == trained_anchoropt
    if key != "TRAINER.NAME":
        return False
    from dassl.engine import TRAINER_REGISTRY

    if not {now, trained_value} <= set(TRAINER_REGISTRY.registered_names()):
        return False
    if TRAINER_REGISTRY.get(now) is not TRAINER_REGISTRY.get(trained_value):
        return False
    return trained_anchoropt or not original.name_turns_on_anchoropt(now)


def _attributes_or_none(cfg: CN) -> list[tuple[str, int]] | None:
    try:
        return atprompt.attributes_from_cfg(cfg)
    except UserError:  # e.g. no attribute table for the evaluated dataset
        return None


def _attribute_conflicts(cfg: CN, given: dict[str, str], trained: Training) -> list[str]:
    """ATPrompt's words and counts have several spellings (ATTRIBUTES, ATT*_TEXT, the dataset's table; N_ATTS,
    N_ATT*): those given are compared by the attributes they give."""
    keys = [key for key in atprompt.LAYOUT_KEYS if key in given]
    if not keys or trained.attributes is None:
        return []
    words = _attributes_or_none(cfg)
    if words == trained.attributes:
        return []
    return [f"{', '.join(keys)} ({given[keys[0]]}) give the attributes {words} but {trained.attributes} in training"]


def _fix_attributes(cfg: CN, trained: Training) -> list[str]:
    """Name the trained attributes outright when the evaluated dataset's table would give others (or none)."""
    if trained.attributes is None or _attributes_or_none(cfg) == trained.attributes:
        return []
    node = cfg.TRAINER.ATPROMPT
    node.ATTRIBUTES = [word for word, _ in trained.attributes]
    if _attributes_or_none(cfg) != trained.attributes:
        node.N_ATTS = [count for _, count in trained.attributes]
    return [f"Note: the attributes of the model, {node.ATTRIBUTES}, are named in TRAINER.ATPROMPT.ATTRIBUTES: the "
            f"table of {cfg.DATASET.NAME or 'the evaluated data'} would give others"]


def cfg_of_settings(settings: dict[str, Any]) -> CN:
    """The config a run's recorded settings describe: the defaults, with every recorded key this version knows."""
    cfg = get_cfg()
    for key, value in settings.items():
        try:
            set_key(cfg, key, _recorded(get_key(cfg, key), value))
        except KeyError:
            continue
    return cfg


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


def _unknown_key(cfg: CN, key: str, source: str) -> str:
    if key.startswith("--"):
        return f"{key} is a flag but comes after the KEY VALUE config options: put every --flag before them"
    keys = _config_keys(cfg)
    leaf = key.rsplit(".", 1)[-1].upper()
    close = [k for k in keys if k.rsplit(".", 1)[-1] == leaf]
    close += [k for k in difflib.get_close_matches(key.upper(), keys, n=3, cutoff=0.6) if k not in close]
    hint = f" Did you mean {' or '.join(close[:3])}?" if close else ""
    return (f"unknown config key {key} ({source}).{hint} Every key is listed with its default in "
            "dassl/config/defaults.py, trainers/config.py, trainers/atprompt.py, trainers/anchoropt.py and each "
            "method's module (the original's names: trainers/original.py).")


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
            default = get_key(cfg, key)
        except KeyError:
            raise UserError(_unknown_key(cfg, key, source)) from err
        with open(path) as f:
            given = _decode(get_key(CN.load_cfg(f), key))
        raise UserError(_wrong_type(key, default, given, source)) from err


def merge_options(cfg: CN, opts: list[str]) -> list[str]:
    """Merge the trailing `KEY VALUE` pairs one at a time, so that an error names its key; return the keys."""
    for i in range(0, len(opts), 2):
        key = opts[i]
        try:
            default = get_key(cfg, key)
        except KeyError:
            raise UserError(_unknown_key(cfg, key, "on the command line")) from None
        if i + 1 == len(opts):
            raise UserError(f"config options come as KEY VALUE pairs, but {key} has no value")
        try:
            cfg.merge_from_list([key, opts[i + 1]])
        except ValueError as err:  # yacs refuses a value of another type than the default
            raise UserError(_wrong_type(key, default, _decode(opts[i + 1]), "on the command line")) from err
    return list(opts[::2])
