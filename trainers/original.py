"""Everything here only imitates the original code, so that its scripts, configs and checkpoints work and a seed
gives its numbers; a reader who wants the methods themselves can skip this file.

- `ALIASES`: the original's trainer names (registered for the method they run);
- `ORIGINAL_KEYS`: config keys the original read under another method's name, mapped to the method's own node;
  `IGNORED_KEYS`: keys its scripts pass that no code ever read (accepted, with a note);
- `replay_clip_construction`, `unused_attribute_blocks`: random draws of things it built and never used;
  `replay_prompted_construction`: the draws of its IVLP/PromptSRC CLIP, whose prompts it drew while building CLIP;
- `FIXED_TOKEN_KEY`, `UNUSED_BLOCK_KEY`: what its checkpoints hold that a model here rebuilds or never had;
- `SCRIPT_ALIASES`: its script names where ours differ.
Folder names keep the original's layout where the methods declare their script families (trainers/families.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace

import torch
import torch.nn as nn
from yacs.config import CfgNode as CN

from clip.model import CLIP, ResidualAttentionBlock, infer_config
from dassl.config import get_key, set_key
from dassl.engine import TRAINER_REGISTRY


@dataclass(frozen=True)
class Alias:
    """An original trainer name: the method it runs, and whether the name itself turns AnchorOPT on (the original's
    `*_AnchorOPT` trainers never read TRAINER.ANCHOROPT.USE_ANCHOROPT). `*_ATP` names use ATPrompt only with
    TRAINER.ATPROMPT.USE_ATPROMPT True, as the original's did."""

    method: str
    anchoropt: bool = False


ALIASES: dict[str, Alias] = {
    **{f"{method}_ATP": Alias(method) for method in ("CoOp", "CoCoOp", "MaPLe", "DePT", "KgCoOp", "PromptSRC", "IVLP")},
    # KgCoOp's, PromptSRC's and IVLP's are not the original's (it had no such variants), but named alike for the
    # scripts.
    **{f"{method}_AnchorOPT": Alias(method, anchoropt=True)
       for method in ("CoOp", "CoCoOp", "MaPLe", "DePT", "KgCoOp", "PromptSRC", "IVLP")},
    "CoOp_Pretrain_Anchor": Alias("AnchorPretrain"),
    "AttributeCompute": Alias("AttributeSearch"),
}


def register_aliases() -> None:
    """Register every alias for its method (called once the methods are registered)."""
    for name, alias in ALIASES.items():
        TRAINER_REGISTRY.register(TRAINER_REGISTRY.get(alias.method), name=name)


def name_turns_on_anchoropt(trainer_name: str) -> bool:
    alias = ALIASES.get(trainer_name)
    return alias is not None and alias.anchoropt


# --------------------------------------------------------------------------------------------------------------
# Config keys
# --------------------------------------------------------------------------------------------------------------
_COOP_PROMPT = ("N_CTX", "CSC", "CTX_INIT", "PREC", "CLASS_TOKEN_POSITION")
# Method (as registered) -> {the original's key: the key it means here}.
ORIGINAL_KEYS: dict[str, dict[str, str]] = {
    "KgCoOp": {**{f"TRAINER.COOP.{k}": f"TRAINER.KGCOOP.{k}" for k in _COOP_PROMPT},
               "TRAINER.COOP.W": "TRAINER.KGCOOP.W"},
    "DePT": {**{f"TRAINER.COOP.{k}": f"TRAINER.DEPT.{k}" for k in _COOP_PROMPT},
             "TRAINER.LINEAR_PROBE.TYPE": "TRAINER.DEPT.HEAD",
             "TRAINER.LINEAR_PROBE.WEIGHT": "TRAINER.DEPT.WEIGHT",
             "TRAINER.LINEAR_PROBE.TEST_TIME_FUSION": "TRAINER.DEPT.TEST_TIME_FUSION",
             "TRAINER.FILM.LINEAR_PROBE": "TRAINER.DEPT.FILM",
             "TRAINER.NAMES_TO_UPDATE": "TRAINER.DEPT.NAMES_TO_UPDATE"},
}
# Keys the original's scripts pass and its code never read: its attribute search script passes N_ATT2..5 (only
# N_ATT1 was read).
IGNORED_KEYS = {f"TRAINER.COOP.N_ATT{k}": "the attribute search reads TRAINER.COOP.N_ATT1 alone" for k in range(2, 6)}
# And a key of the ATPrompt code's IVLP, an altered experiment it never imported.
IGNORED_KEYS["TRAINER.IVLP.IMG_WEIGHT"] = "only the ATPrompt code's unused IVLP variant had it"
# Nodes that exist only to accept the original's keys (their values are moved to the method's own node).
ORIGINAL_ONLY_NODES = ("TRAINER.LINEAR_PROBE", "TRAINER.FILM", "TRAINER.NAMES_TO_UPDATE")


def add_original_keys(cfg: CN) -> None:
    """The original's keys that no method here owns, with its defaults, so that its yaml files and scripts merge."""
    # The original attribute search's keys, under CoOp's node as its script passes them (trainers/attribute_search.py).
    for k in range(1, 6):
        cfg.TRAINER.COOP[f"ATT{k}_TEXT"] = "none"
        cfg.TRAINER.COOP[f"N_ATT{k}"] = 4
    cfg.TRAINER.COOP.W = 2.0  # read as TRAINER.KGCOOP.W by KgCoOp
    cfg.TRAINER.LINEAR_PROBE = CN()  # read as TRAINER.DEPT.* by DePT
    cfg.TRAINER.LINEAR_PROBE.TYPE = "linear"
    cfg.TRAINER.LINEAR_PROBE.WEIGHT = 0.7
    cfg.TRAINER.LINEAR_PROBE.TEST_TIME_FUSION = True
    cfg.TRAINER.FILM = CN()
    cfg.TRAINER.FILM.LINEAR_PROBE = True
    cfg.TRAINER.NAMES_TO_UPDATE = ["prompt_learner", "linear_probe", "film"]
    cfg.TRAINER.IVLP.IMG_WEIGHT = 0.5


@dataclass
class KeyResolution:
    """What `resolve_original_keys` did, for the log: the keys it moved and the notes about unread ones."""

    moved: list[tuple[str, str]] = field(default_factory=list)  # (the original's key, the key it means here)
    notes: list[str] = field(default_factory=list)


def resolve_original_keys(cfg: CN, given: dict[str, int], method: str, own_nodes: Sequence[str],
                          method_nodes: dict[str, str]) -> KeyResolution:
    """Move the original's keys that `given` holds (the keys a yaml file or the command line set, each with its
    place in the order they were set) to the method's own keys, unless the own key was set after it (the last one
    set wins, as everywhere in the config); note the given keys the run never reads: ignored ones, and other
    methods' (`method_nodes`: node -> method)."""
    done = KeyResolution()
    mapping = ORIGINAL_KEYS.get(method, {})
    for old, new in mapping.items():
        if old in given and given[old] > given.get(new, -1):
            set_key(cfg, new, get_key(cfg, old))
            done.moved.append((old, new))
    for key in sorted(given):
        node = key.split(".")[1] if key.startswith("TRAINER.") and key.count(".") >= 2 else None
        if key in IGNORED_KEYS:
            done.notes.append(f"{key} is not read ({IGNORED_KEYS[key]})")
        elif key in mapping:
            continue
        elif node in method_nodes and node not in own_nodes:
            done.notes.append(f"{key} is {method_nodes[node]}'s setting; {method} does not read it")
        elif key.startswith(ORIGINAL_ONLY_NODES):
            done.notes.append(f"{key} is the original DePT's setting; {method} does not read it")
    return done


# --------------------------------------------------------------------------------------------------------------
# Random draws the original made for nothing
# --------------------------------------------------------------------------------------------------------------
def replay_clip_construction(clip_model: CLIP) -> None:
    """Draw the random numbers that building another CLIP of this architecture draws (its initialisation), and
    drop it: where the original loaded a second copy of CLIP (KgCoOp's template features, AnchorOPT's branches)."""
    CLIP(**infer_config(clip_model.state_dict()))


def replay_prompted_construction(clip_model: CLIP, vision: tuple[int, int],
                                 text: tuple[int, int]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Draw what building the original IVLP/PromptSRC CLIP drew, and return the prompts among those draws.

    That CLIP held its prompts in its modules, so their values were drawn amid CLIP's own initialisation: the vision
    tower's input prompt right after `conv1`, and each deep prompt right after its block (vision: (tokens, depth) with
    blocks 1..depth-1; text likewise), all N(0, 0.02^2) in fp32. The draws follow clip.model.CLIP's construction
    order (tests/test_original_draws.py checks them against building CLIP itself)."""
    n_vision, vision_depth = vision
    n_text, text_depth = text
    visual = clip_model.visual

    def prompt(n: int, width: int) -> torch.Tensor:
        return nn.init.normal_(torch.empty(n, width), std=0.02)

    def blocks(transformer, n: int, depth: int, drawn: list[torch.Tensor]) -> list[ResidualAttentionBlock]:
        built = []
        for i, block in enumerate(transformer.resblocks):
            built.append(ResidualAttentionBlock(transformer.width, 1, mlp_width=block.mlp.c_fc.out_features))
            if 1 <= i < depth:
                drawn.append(prompt(n, transformer.width))
        return built

    width = visual.conv1.out_channels
    vision_prompts, text_prompts = [], []
    nn.Conv2d(3, width, kernel_size=visual.conv1.kernel_size, stride=visual.conv1.stride, bias=False)
    if vision_depth:
        vision_prompts.append(prompt(n_vision, width))
    torch.randn(visual.class_embedding.shape)
    torch.randn(visual.positional_embedding.shape)
    blocks(visual.transformer, n_vision, vision_depth, vision_prompts)
    torch.randn(visual.proj.shape)
    text_blocks = blocks(clip_model.transformer, n_text, text_depth, text_prompts)
    embedding = nn.Embedding(*clip_model.token_embedding.weight.shape)
    transformer = SimpleNamespace(width=clip_model.transformer.width, layers=len(text_blocks), resblocks=text_blocks)
    CLIP.initialize_parameters(SimpleNamespace(
        token_embedding=embedding, positional_embedding=torch.empty(clip_model.positional_embedding.shape),
        visual=None, transformer=transformer, text_projection=torch.empty(clip_model.text_projection.shape)))
    return vision_prompts, text_prompts


def unused_attribute_blocks(cfg: CN, attributes: Sequence[tuple[str, int]]) -> list[int]:
    """Sizes of the attribute blocks the original drew and never used: with ATPrompt on it always drew three
    (N_ATT1..3), whatever the number of attributes. [] when ATPrompt is off or TRAINER.ORIGINAL_DRAWS is False."""
    if not attributes or not cfg.TRAINER.ORIGINAL_DRAWS:
        return []
    return [cfg.TRAINER.ATPROMPT.get(f"N_ATT{k}") for k in range(len(attributes) + 1, 4)]


# --------------------------------------------------------------------------------------------------------------
# Checkpoints and scripts
# --------------------------------------------------------------------------------------------------------------
# Fixed-token buffers the original saved; they depend on the class names, so they are always rebuilt.
FIXED_TOKEN_KEY = re.compile(
    r"(^|\.)(token_prefix|token_suffix|token_middle\d*|token_of|token_and|token_embeds|gather_idx|eot)$")
# The original always saved three attribute blocks; those beyond the attributes it used were never trained.
UNUSED_BLOCK_KEY = re.compile(r"(^|\.)ctx_att[123]$")
# Parts of the original's script names -> ours ("vanila" as it spelled it; MaPLe's cross-dataset "test"), and its
# attribute search's folder.
SCRIPT_ALIASES = {"vanila": "vanilla", "xd_test": "xd_eval"}
SCRIPT_FOLDER_ALIASES = {"attribute_compute": "attribute_search"}
