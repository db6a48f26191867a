"""ATPrompt (Li et al., ICCV 2025) as a plug-in of every prompt learner: fixed attribute words among the soft tokens,
`[A1] color [A2] shape [ctx] <class name>.` (trainers/layout.py lays the prompt out).

Its config node is `TRAINER.ATPROMPT`: the original's keys and defaults, then the new ones. `attributes_from_cfg`
reads the attribute words a run asks for and the soft tokens before each; trainers/base.py gives them to whatever
prompt learner a method declares.
"""

from __future__ import annotations

from yacs.config import CfgNode as CN

from dassl.utils.errors import UserError
from datasets import catalog


def config_node() -> CN:
    """TRAINER.ATPROMPT."""
    node = CN()
    node.USE_ATPROMPT = False
    node.N_ATT1 = 4  # soft tokens before the first attribute word
    node.N_ATT2 = 4
    node.N_ATT3 = 4
    node.ATT_NUM = 0  # number of attributes; 0 = take the dataset's default table
    node.ATT1_TEXT = "none"
    node.ATT2_TEXT = "none"
    node.ATT3_TEXT = "none"
    # New: any number of attributes, e.g. "['color', 'shape', 'size', 'pattern']"; wins over ATT*_TEXT.
    node.ATTRIBUTES = []
    # New: soft tokens per attribute for ATTRIBUTES (one value for all, or one per word); empty = N_ATT1..3.
    node.N_ATTS = []
    # New: reproduce the original's one-token-per-attribute-word layout (corrupts multi-token words such as
    # "playfulness"); only for evaluating checkpoints trained with the original code.
    node.SINGLE_TOKEN_WORDS = False
    return node


def attributes_from_cfg(cfg: CN, enabled: bool | None = None) -> list[tuple[str, int]]:
    """The (word, number of soft tokens) pairs a config asks for; [] when ATPrompt is off.

    `enabled` overrides `TRAINER.ATPROMPT.USE_ATPROMPT` (a method that never uses ATPrompt passes False).

    Explicit words win: `TRAINER.ATPROMPT.ATTRIBUTES` (any number), else `ATT1_TEXT..ATT3_TEXT` (the first
    `ATT_NUM` of them, or all that are not "none"), else the paper's table for `DATASET.NAME`.
    """
    atp = cfg.TRAINER.ATPROMPT
    if not (atp.USE_ATPROMPT if enabled is None else enabled):
        return []
    words = [str(w) for w in atp.ATTRIBUTES]
    if not words:
        given = [atp.get(f"ATT{k}_TEXT", "none") for k in (1, 2, 3)]
        if atp.ATT_NUM > 0:
            words = given[: atp.ATT_NUM]
            missing = [f"ATT{k + 1}_TEXT" for k, w in enumerate(words) if w == "none"]
            if missing and not all(w == "none" for w in words):
                raise UserError(f"TRAINER.ATPROMPT.ATT_NUM is {atp.ATT_NUM} but {', '.join(missing)} not set")
            if missing:  # ATT_NUM alone (as the original scripts pass it) selects the dataset's table
                words = []
        else:
            words = [w for w in given if w != "none"]
    if not words:
        fix = "TRAINER.ATPROMPT.USE_ATPROMPT is on, so set TRAINER.ATPROMPT.ATTRIBUTES, e.g. \"['color', 'shape']\""
        words = catalog.paper_words(cfg.DATASET.NAME, "attributes", fix)
    return list(zip(words, _tokens_per_attribute(atp, len(words))))


def _tokens_per_attribute(atp: CN, k: int) -> list[int]:
    counts = [int(n) for n in atp.N_ATTS]
    if len(counts) == 1:
        counts = counts * k
    elif not counts:  # the original keys; attributes beyond the third reuse N_ATT1
        counts = [atp.get(f"N_ATT{i + 1}", atp.N_ATT1) for i in range(k)]
    if len(counts) != k:
        raise UserError(f"TRAINER.ATPROMPT.N_ATTS has {len(counts)} values for {k} attributes; give 1 or {k}")
    if any(n < 0 for n in counts):
        raise UserError(f"soft tokens per attribute must be >= 0, got {counts}")
    return counts
