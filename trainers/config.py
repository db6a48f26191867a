"""Config keys the prompt-learning trainers add to Dassl's defaults.

Names and defaults follow the original ATPrompt `train.py` so its yaml files and scripts merge unchanged; the
few keys that are new here say so in their comment.
"""

import ast
import difflib
import os
import re
import shlex

import yaml
from yacs.config import CfgNode as CN

from dassl.config import get_cfg_default
from dassl.utils.errors import UserError


def extend_cfg(cfg: CN) -> CN:
    """Add the trainer nodes (COOP, COCOOP, MAPLE, ATPROMPT, DePT's heads, the attribute search) to `cfg`."""
    cfg.TRAINER.COOP = CN()
    cfg.TRAINER.COOP.N_CTX = 16  # number of class-context soft tokens
    cfg.TRAINER.COOP.CSC = False  # class-specific context
    # Word initialisation of the context ("a photo of a"); "" = random. The original's bool default made every
    # string value a yacs type error.
    cfg.TRAINER.COOP.CTX_INIT = ""
    cfg.TRAINER.COOP.PREC = "fp16"  # fp16, fp32, amp or bf16
    cfg.TRAINER.COOP.CLASS_TOKEN_POSITION = "end"  # end, middle or front
    cfg.TRAINER.COOP.W = 2.0  # KgCoOp: weight of the loss keeping class text features near the template ones

    cfg.TRAINER.COCOOP = CN()
    cfg.TRAINER.COCOOP.N_CTX = 16
    cfg.TRAINER.COCOOP.CTX_INIT = ""
    cfg.TRAINER.COCOOP.PREC = "fp16"

    cfg.TRAINER.MAPLE = CN()
    cfg.TRAINER.MAPLE.N_CTX = 2
    cfg.TRAINER.MAPLE.CTX_INIT = "a photo of a"
    cfg.TRAINER.MAPLE.PREC = "fp16"
    cfg.TRAINER.MAPLE.PROMPT_DEPTH = 9  # layers that receive deep prompts (1 = shallow only)

    cfg.TRAINER.ATPROMPT = CN()
    cfg.TRAINER.ATPROMPT.USE_ATPROMPT = False
    cfg.TRAINER.ATPROMPT.N_ATT1 = 4  # soft tokens before the first attribute word
    cfg.TRAINER.ATPROMPT.N_ATT2 = 4
    cfg.TRAINER.ATPROMPT.N_ATT3 = 4
    cfg.TRAINER.ATPROMPT.ATT_NUM = 0  # number of attributes; 0 = take the dataset's default table
    cfg.TRAINER.ATPROMPT.ATT1_TEXT = "none"
    cfg.TRAINER.ATPROMPT.ATT2_TEXT = "none"
    cfg.TRAINER.ATPROMPT.ATT3_TEXT = "none"
    # New: any number of attributes, e.g. "['color', 'shape', 'size', 'pattern']"; wins over ATT*_TEXT.
    cfg.TRAINER.ATPROMPT.ATTRIBUTES = []
    # New: soft tokens per attribute for ATTRIBUTES (one value for all, or one per word); empty = N_ATT1..3.
    cfg.TRAINER.ATPROMPT.N_ATTS = []
    # New: reproduce the original's one-token-per-attribute-word layout (corrupts multi-token words such as
    # "playfulness"); only for evaluating checkpoints trained with the original code.
    cfg.TRAINER.ATPROMPT.SINGLE_TOKEN_WORDS = False

    # New: also make the random draws the original made and never used (attribute blocks beyond the K used, the
    # second CLIP KgCoOp built), so that a seed gives the original's numbers; False skips them, which changes the
    # per-seed numbers (not their distribution).
    cfg.TRAINER.ORIGINAL_DRAWS = True

    # AnchorOPT (docs/AnchorOPT.md): the original's keys and defaults, then the new ones.
    cfg.TRAINER.ANCHOROPT = CN()
    # Turns AnchorOPT on for a method (the *_AnchorOPT trainer names always use it: the original never read this).
    cfg.TRAINER.ANCHOROPT.USE_ANCHOROPT = False
    cfg.TRAINER.ANCHOROPT.N_CTX = 4  # learnable context tokens arranged with the anchor (replaces <method>.N_CTX)
    cfg.TRAINER.ANCHOROPT.ANCHOR_LEN = 1  # anchor tokens
    cfg.TRAINER.ANCHOROPT.GUMBEL_TEMP = 1.0  # temperature of the Gumbel-softmax over the position logits
    cfg.TRAINER.ANCHOROPT.KD_TEMPERATURE = 1.0
    cfg.TRAINER.ANCHOROPT.ANCHOR_MSE_WEIGHT = 10.0  # stage I: weight of the anchor-to-description loss
    cfg.TRAINER.ANCHOROPT.PROMPT_CE_WEIGHT = 1.0
    cfg.TRAINER.ANCHOROPT.KD_WEIGHT = 1.0  # 0 drops the distillation term (and KD_TEMPERATURE is then unused)
    cfg.TRAINER.ANCHOROPT.MAX_TEMPLATE_LENGTH = 10  # stage I: descriptions used per class (its first ones)
    # New: the stage-I description file ({class name: [sentence, ...]}); "" = DESCRIPTIONS_DIR/<the dataset's file>.
    cfg.TRAINER.ANCHOROPT.DESCRIPTIONS = ""
    cfg.TRAINER.ANCHOROPT.DESCRIPTIONS_DIR = "templates"  # new: where the per-dataset description files are
    # New: the anchor of stage II: an anchor file of ours, an original (Dassl) anchor checkpoint, or a stage-I output
    # folder; "" = ANCHOR_DIR/<the dataset's folder>/anchor_prompt_learner/model.pth.tar, the original's layout.
    cfg.TRAINER.ANCHOROPT.ANCHOR_WEIGHTS = ""
    cfg.TRAINER.ANCHOROPT.ANCHOR_DIR = "anchor_weights"  # new
    # New: the original's test-time Gumbel noise (a random arrangement per batch) instead of the arrangement the
    # position logits choose.
    cfg.TRAINER.ANCHOROPT.EVAL_GUMBEL = False
    # New: pool the normal branch's text feature ANCHOR_LEN tokens before its EOT token, as the original did (it
    # read the "." token); False pools at EOT.
    cfg.TRAINER.ANCHOROPT.ORIGINAL_EOT = False
    # New: evaluate a model with the evaluated dataset's own anchor file, as the original did in cross-dataset
    # evaluation; False uses the anchor the model was trained with (saved in its checkpoint).
    cfg.TRAINER.ANCHOROPT.TARGET_ANCHOR = False
    # New: MaPLe+AnchorOPT's deep text layers read the anchor's hidden state one position before its slot, as the
    # original did (at the start-of-text token when the anchor is first); False reads it at its slot.
    cfg.TRAINER.ANCHOROPT.ORIGINAL_DEEP_ANCHOR = False
    # New: CoCoOp+AnchorOPT. The original kept the position logits at their random start (only their Gumbel samples
    # vary, a new arrangement every step) and, by an omission in its optimiser, never updated the meta-net.
    cfg.TRAINER.ANCHOROPT.COCOOP_LEARN_POSITIONS = False  # True: learn them, as the other methods do
    cfg.TRAINER.ANCHOROPT.COCOOP_TRAIN_META_NET = True  # False: the original's untrained meta-net

    cfg.TRAINER.LINEAR_PROBE = CN()
    cfg.TRAINER.LINEAR_PROBE.TYPE = "linear"
    cfg.TRAINER.LINEAR_PROBE.WEIGHT = 0.7
    cfg.TRAINER.LINEAR_PROBE.TEST_TIME_FUSION = True
    cfg.TRAINER.FILM = CN()
    cfg.TRAINER.FILM.LINEAR_PROBE = True
    cfg.TRAINER.NAMES_TO_UPDATE = ["prompt_learner", "linear_probe", "film"]

    cfg.TRAINER.ATTRIBUTE_SEARCH = CN()  # new node: the differentiable attribute search
    cfg.TRAINER.ATTRIBUTE_SEARCH.BASES = []  # candidate words; empty = the dataset's bases from the paper
    cfg.TRAINER.ATTRIBUTE_SEARCH.MIN_SIZE = 1  # smallest subset size (the original code used 3)
    cfg.TRAINER.ATTRIBUTE_SEARCH.MAX_SIZE = -1  # largest subset size; -1 = all bases
    cfg.TRAINER.ATTRIBUTE_SEARCH.ALPHA_LR = 0.02
    cfg.TRAINER.ATTRIBUTE_SEARCH.ALPHA_BETAS = (0.5, 0.999)
    cfg.TRAINER.ATTRIBUTE_SEARCH.ALPHA_WEIGHT_DECAY = 0.0
    # Prompts per text-encoder call: -1 = sized from free memory, 0 = all at once, N = N.
    cfg.TRAINER.ATTRIBUTE_SEARCH.CHUNK_SIZE = -1
    cfg.TRAINER.ATTRIBUTE_SEARCH.PREC = "fp32"
    # The candidates in the order Python's random.shuffle gives, as the original (False: by size, as listed).
    cfg.TRAINER.ATTRIBUTE_SEARCH.SHUFFLE = True
    # "all": alpha steps cycle through the whole validation set; "first_batch": the original's, the first
    # validation batch at every step (alpha then sees at most DATALOADER.TEST.BATCH_SIZE images).
    cfg.TRAINER.ATTRIBUTE_SEARCH.VALIDATION = "all"
    # The original search script's keys: the bases (those not "none") and the soft tokens of every attribute
    # (N_ATT1; it passed N_ATT2..5 too, which it never read).
    for k in range(1, 6):
        cfg.TRAINER.COOP[f"ATT{k}_TEXT"] = "none"
        cfg.TRAINER.COOP[f"N_ATT{k}"] = 4

    # new: where named CLIP weights are cached ("" = ~/.cache/clip; open_clip tags: the Hugging Face cache)
    cfg.MODEL.BACKBONE.DOWNLOAD_ROOT = ""

    # New node: the feature cache (dassl/engine/feature_cache.py, docs/PERFORMANCE.md). Evaluation reads the frozen
    # image encoder's output on a test image it has seen before from DIR instead of recomputing it; results are the same
    # either way. Off by default so that a run writes nothing outside its output folder unless asked to; the run
    # scripts turn it on (tools/run_protocol.py, FEATURE_CACHE=0 to not).
    cfg.FEATURE_CACHE = CN()
    cfg.FEATURE_CACHE.ENABLED = False
    cfg.FEATURE_CACHE.DIR = ""  # a folder that many runs share; "" = ~/.cache/atprompt/features
    return cfg


def get_cfg() -> CN:
    """Dassl defaults plus the trainer nodes: the complete, unfrozen default config."""
    return extend_cfg(get_cfg_default())


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
            "dassl/config/defaults.py and trainers/config.py.")


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


def merge_file(cfg: CN, path: str, flag: str) -> None:
    """Merge a yaml config file; a bad key or value is named with the file it comes from."""
    if not os.path.isfile(path):
        raise UserError(f"{flag} {path}: no such file")
    source = f"in {flag} {path}"
    try:
        with open(path) as f:
            loaded = CN.load_cfg(f)
        _read_original_ctx_init(loaded)
        cfg.merge_from_other_cfg(loaded)
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


def merge_options(cfg: CN, opts: list[str]) -> None:
    """Merge the trailing `KEY VALUE` pairs one at a time, so that an error names its key."""
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
