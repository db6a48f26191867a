"""MaPLe (Khattak et al., CVPR 2023) and MaPLe+ATPrompt: coupled deep prompts in both CLIP towers.

The text tower receives the attribute-anchored prompt of `PromptLearner`; at text layers 1..J-1 the class
context's hidden states are replaced by learnable deep prompts. Each deep text prompt is mapped by its own linear
coupling function into a visual deep prompt that replaces the vision tower's prompt tokens at the same layer; the
vision tower's input carries `proj(ctx)` after the patch tokens. Only the class context is coupled to vision:
attribute blocks and words flow through the text layers untouched. The deep prompts' placement is shared with IVLP
(trainers/deep_prompts.py).

Unlike the original, the replaced positions come from the prompt layout (any number of attributes, attribute
words of any token length, any N_ATT), widths come from the CLIP model, and every precision works.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
from yacs.config import CfgNode as CN

from clip.model import CLIP, VisionTransformer
from dassl.data.datasets import DatasetBase
from dassl.engine import TRAINER_REGISTRY
from dassl.utils.errors import UserError
from datasets import catalog
from trainers import anchoropt
from trainers.deep_prompts import DeepPromptedCLIP, DeepPromptLearner, DeepPromptTrainer
from trainers.families import (
    B2N,
    EVAL,
    SEED,
    XD_FOLDERS,
    anchoropt_base2new,
    atprompt_and_vanilla,
    benchmark_columns,
)
from trainers.method import TRAIN_AND_EVAL, Method, OriginalDraws
from trainers.prompting import PromptedCLIP


class MultiModalPromptLearner(DeepPromptLearner):
    """MaPLe's deep prompts (trainers/deep_prompts.py), coupled from the text to the vision tower; parameter names are
    the original's so its checkpoints load.

    - `proj`: Linear(text width -> vision width), maps `ctx` to the shallow visual prompt;
    - `compound_prompts_text`: J-1 deep text prompts [n_ctx, text width];
    - `compound_prompt_projections`: J-1 copies of one Linear(text width -> vision width), the coupling functions.
    """

    def __init__(self, clip_model: CLIP, classnames: Sequence[str], n_ctx: int, depth: int,
                 original_deep_anchor: bool = False, **prompt: Any) -> None:
        if not isinstance(clip_model.visual, VisionTransformer):
            raise UserError(
                "MaPLe prompts the vision transformer, but this CLIP has a ResNet image encoder; choose a ViT "
                "backbone (MODEL.BACKBONE.NAME, e.g. ViT-B/16)"
            )
        layers = min(clip_model.transformer.layers, clip_model.visual.transformer.layers)
        if not 1 <= depth <= layers:
            raise UserError(
                f"TRAINER.MAPLE.PROMPT_DEPTH is {depth}; it must be between 1 (shallow prompts only) and {layers}, "
                "the number of transformer layers of this CLIP"
            )
        if n_ctx < 1:
            raise UserError(f"TRAINER.MAPLE.N_CTX is {n_ctx}; MaPLe couples the class context to vision, set it >= 1")
        super().__init__(clip_model, classnames, n_ctx, depth, depth, n_ctx, original_deep_anchor=original_deep_anchor,
                         **prompt)

    @property
    def depth(self) -> int:
        return self.text_depth

    def init_method_parts(self, clip_model: CLIP) -> None:
        text_width, vision_width = self.ctx.shape[-1], clip_model.visual.conv1.out_channels
        # As in the original: proj in the CLIP dtype (it acts on ctx), the deep prompts and couplings in fp32.
        self.proj = nn.Linear(text_width, vision_width).to(clip_model.dtype)
        self.init_positions()  # AnchorOPT's original drew them after proj
        self.compound_prompts_text = nn.ParameterList(
            nn.Parameter(nn.init.normal_(torch.empty(self.n_ctx, text_width), std=0.02)) for _ in range(self.depth - 1)
        )
        coupling = nn.Linear(text_width, vision_width)
        self.compound_prompt_projections = nn.ModuleList(copy.deepcopy(coupling) for _ in range(self.depth - 1))

    def deep_text_prompt(self, i: int) -> torch.Tensor:
        return self.compound_prompts_text[i - 1]

    def vision_tokens(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """proj(ctx), and each deep text prompt through its coupling function."""
        deep = [couple(p) for couple, p in zip(self.compound_prompt_projections, self.compound_prompts_text)]
        return self.proj(self.ctx), deep

    def get_extra_state(self) -> dict:
        return {**super().get_extra_state(), "prompt_depth": self.depth}


class MaPLeCLIP(DeepPromptedCLIP):
    """CLIP with MaPLe's prompts in both towers (trainers/deep_prompts.py); the visual prompts are a few small matrix
    products of the text ones."""


def config() -> CN:
    """TRAINER.MAPLE."""
    node = CN()
    node.N_CTX = 2  # class-context tokens, coupled to the vision tower
    node.CTX_INIT = "a photo of a"  # its first N_CTX words initialise the context (when N_CTX <= 4, as the original)
    node.PREC = "fp16"  # fp16, fp32, amp or bf16
    node.PROMPT_DEPTH = 9  # layers that receive deep prompts (1 = shallow only)
    return node


CFG = "vit_b16_c2_ep5_batch4_2ctx"
OPTIONS = "TRAINER.MAPLE.N_CTX {NCTX}"
# The epoch count is part of the evaluation folder (the original's 5- and 10-epoch evaluations shared one), and
# MAPLE.N_CTX is set in cross-dataset runs (the original's never set it, which broke MaPLe_ATP's offsets).
EVAL_DIR = EVAL + "/nctx{NCTX}_csc_ctp_epo{EPO}/{DATASET}" + SEED
FAMILIES = (
    # The original's docs/ATPrompt.md table (5 epochs, 4 tokens; 10 epochs on Caltech101, OxfordPets, Flowers102 and
    # EuroSAT; 2 tokens on FGVCAircraft and UCF101).
    *atprompt_and_vanilla("base2new", "MaPLe", "MaPLe", CFG, B2N + "/CTX_{NCTX}_epo_{EPO}" + SEED, EVAL_DIR, OPTIONS,
                          atprompt={"EPO": 5, "NCTX": 4}, vanilla={"EPO": 5, "NCTX": 2},
                          atprompt_per_dataset={"caltech101": {"EPO": 10}, "oxford_pets": {"EPO": 10},
                                                "oxford_flowers": {"EPO": 10}, "fgvc_aircraft": {"NCTX": 2},
                                                "eurosat": {"EPO": 10}, "ucf101": {"NCTX": 2}}),
    *atprompt_and_vanilla("xd", "MaPLe", "MaPLe", CFG + "_cross_datasets", XD_FOLDERS, EVAL_DIR, OPTIONS,
                          atprompt={"EPO": 2, "NCTX": 4}, vanilla={"EPO": 2, "NCTX": 2}, source=catalog.XD_SOURCE),
    # AnchorOPT's stage II (the original's docs/AnchorOPT.md table; StanfordCars trains without distillation).
    anchoropt_base2new("MaPLe", "MaPLe", CFG,
                       {"EPO": 10, "NCTX": 4, "ANCHOR_LEN": 1, "PROMPT_CE_WEIGHT": 1.0, "KD_WEIGHT": 100.0,
                        "KD_TEMPERATURE": 2.0},
                       benchmark_columns({
                           "NCTX": (8, 8, 8, 4, 4, 8, 4, 4, 4, 4, 8),
                           "EPO": (5, 10, 10, 20, 20, 10, 10, 20, 20, 20, 10),
                           "PROMPT_CE_WEIGHT": (1.0, 10.0, 1.0, 10.0, 10.0, 1.0, 1.0, 10.0, 1.0, 1.0, 1.0),
                           "KD_WEIGHT": (100.0, 1000.0, 10.0, 0.0, 100.0, 100.0, 10.0, 1000.0, 10.0, 1.0, 1.0),
                           "KD_TEMPERATURE": (1.0, 2.0, 0.5, 0.0, 2.0, 1.0, 4.0, 4.0, 4.0, 2.0, 2.0),
                       })),
)


@TRAINER_REGISTRY.register()
class MaPLe(DeepPromptTrainer):
    """`TRAINER.MAPLE.*` configures the prompts; `TRAINER.ATPROMPT.USE_ATPROMPT` adds the attribute blocks."""

    METHOD = Method(
        "MaPLe", "maple", "MAPLE", order=30, config=config, families=FAMILIES,
        benchmark=TRAIN_AND_EVAL,
        draws=OriginalDraws(anchor_second_clip="before"), needs_vit=True,
        paper={"MaPLe": (82.28, 75.14, 78.55), "MaPLe_ATP": (82.98, 75.76, 79.21),
               "MaPLe_AnchorOPT": (83.62, 77.36, 80.37)},
        summary="coupled deep prompts in both CLIP towers",
    )
    LEARNER = MultiModalPromptLearner
    MODEL = MaPLeCLIP
    SAVE_NAME = "MultiModalPromptLearner"

    @classmethod
    def learner_options(cls, cfg: CN) -> dict:
        return {"depth": cls.options(cfg).PROMPT_DEPTH,
                "original_deep_anchor": cfg.TRAINER.ANCHOROPT.ORIGINAL_DEEP_ANCHOR}

    @classmethod
    def adapt_state_dict(cls, cfg: CN, model: PromptedCLIP, state: dict, meta: dict,
                         dataset: DatasetBase | None = None) -> dict:
        """The original's MaPLe_AnchorOPT checkpoints hold its two CLIPs under other names and the anchor in its
        anchor learner: the prompted CLIP's weights are ours, the unprompted copy is dropped, the anchor moves."""
        if not anchoropt.enabled(cfg):
            return state
        renamed = {}
        for key, value in state.items():
            if key == "anchor_prompt_learner.anchor_ctx_1":
                key = "prompt_learner.anchor"
            elif key.startswith(("image_encoder_vanilla.", "text_encoder_vanilla.", "anchor_prompt_learner.")):
                continue
            renamed[key.replace("_encoder_maple.", "_encoder.", 1)] = value
        return renamed
