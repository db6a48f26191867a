"""IVLP (independent vision-language prompting, Khattak et al.): deep prompts in both CLIP towers, learned apart.

The text tower receives the (attribute-anchored) prompt of `PromptLearner`, its class context replaced by a deep
prompt before each of its layers 1..J_t-1; the vision tower carries N_CTX_VISION prompt tokens after its patches,
replaced before each of its layers 1..J_v-1 (trainers/deep_prompts.py). Unlike MaPLe, nothing couples the towers.
PromptSRC (trainers/promptsrc.py) is IVLP plus its regularisers.

As the original, `ctx` is word-initialised from CTX_INIT when N_CTX_TEXT <= 4 (the rest of its words stay fixed);
unlike it, the deep text prompts replace the class context wherever the layout puts it (any number of attributes,
attribute words of any token length, any N_ATT), and every precision works.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
from yacs.config import CfgNode as CN

from clip.model import CLIP, VisionTransformer
from dassl.data.datasets import DatasetBase
from dassl.engine import TRAINER_REGISTRY
from dassl.utils.errors import UserError
from trainers.deep_prompts import DeepPromptedCLIP, DeepPromptLearner, DeepPromptTrainer
from trainers.families import B2N, EVAL, SEED, anchoropt_base2new, atprompt_and_vanilla
from trainers.method import TRAIN_AND_EVAL, Method, OriginalDraws
from trainers.original import replay_prompted_construction
from trainers.prompting import PromptedCLIP


def normal_prompts(count: int, n: int, width: int) -> list[torch.Tensor]:
    return [nn.init.normal_(torch.empty(n, width), std=0.02) for _ in range(count)]


class IVLPPromptLearner(DeepPromptLearner):
    """The context `ctx` (and ATPrompt's blocks), the vision prompt tokens `VPT` [n_vision, vision width], and the deep
    prompts `deep_text` (J_t-1 of [n_ctx, text width]) and `deep_vision` (J_v-1 of [n_vision, vision width]); the
    prompts are N(0, 0.02^2) in fp32, as in the original (whose checkpoints' names are mapped by `IVLP`).

    The original drew them while building CLIP, before the context; `original_construction` replays that
    construction here (trainers/original.py), its draws standing for those of loading CLIP."""

    def __init__(self, clip_model: CLIP, classnames: Sequence[str], n_ctx: int, n_ctx_vision: int, text_depth: int,
                 vision_depth: int, original_construction: bool = False, node: str = "IVLP", **prompt: Any) -> None:
        check_prompts(clip_model, n_ctx, n_ctx_vision, text_depth, vision_depth, node)
        vision, text = (n_ctx_vision, vision_depth), (n_ctx, text_depth)
        # A plain value may be set before Module.__init__; init_method_parts takes it.
        self.drawn = replay_prompted_construction(clip_model, vision, text) if original_construction else None
        super().__init__(clip_model, classnames, n_ctx, text_depth, vision_depth, n_ctx_vision, **prompt)

    def init_method_parts(self, clip_model: CLIP) -> None:
        self.init_positions()
        drawn = self.drawn
        del self.drawn
        if drawn is None:
            drawn = (normal_prompts(self.vision_depth, self.n_vision, clip_model.visual.conv1.out_channels),
                     normal_prompts(self.text_depth - 1, self.n_ctx, self.ctx.shape[-1]))
        vision, text = drawn
        if vision:
            self.VPT = nn.Parameter(vision[0])
        self.deep_vision = nn.ParameterList(vision[1:])
        self.deep_text = nn.ParameterList(text)

    def deep_text_prompt(self, i: int) -> torch.Tensor:
        return self.deep_text[i - 1]

    def vision_tokens(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self.VPT, list(self.deep_vision)

    def get_extra_state(self) -> dict:
        return {**super().get_extra_state(), "prompt_depth_text": self.text_depth,
                "prompt_depth_vision": self.vision_depth, "n_ctx_vision": self.n_vision}


def check_prompts(clip_model: CLIP, n_ctx: int, n_ctx_vision: int, text_depth: int, vision_depth: int,
                  node: str) -> None:
    if not isinstance(clip_model.visual, VisionTransformer):
        raise UserError(f"{node} prompts the vision transformer, but this CLIP has a ResNet image encoder; choose a "
                        "ViT backbone (MODEL.BACKBONE.NAME, e.g. ViT-B/16)")
    text_layers = clip_model.transformer.layers
    if not 1 <= text_depth <= text_layers:
        raise UserError(f"TRAINER.{node}.PROMPT_DEPTH_TEXT is {text_depth}; it must be between 1 (the prompt alone) "
                        f"and {text_layers}, the number of text transformer layers of this CLIP")
    if text_depth > 1 and n_ctx < 1:
        raise UserError(f"TRAINER.{node}.N_CTX_TEXT is {n_ctx}; the deep text prompts replace the class context, "
                        "set it >= 1 (or PROMPT_DEPTH_TEXT 1)")
    vision_layers = clip_model.visual.transformer.layers
    if not 0 <= vision_depth <= vision_layers:
        raise UserError(f"TRAINER.{node}.PROMPT_DEPTH_VISION is {vision_depth}; it must be between 0 (no vision "
                        f"prompts) and {vision_layers}, the number of vision transformer layers of this CLIP")
    if vision_depth and n_ctx_vision < 1:
        raise UserError(f"TRAINER.{node}.N_CTX_VISION is {n_ctx_vision}; set it >= 1, or PROMPT_DEPTH_VISION 0 for "
                        "no vision prompts")


class IVLPCLIP(DeepPromptedCLIP):
    """CLIP with IVLP's prompts in both towers (trainers/deep_prompts.py)."""


def config() -> CN:
    """TRAINER.IVLP (the authors' defaults)."""
    node = CN()
    node.N_CTX_VISION = 2  # vision prompt tokens, after the patch tokens
    node.N_CTX_TEXT = 2  # class-context tokens
    node.CTX_INIT = "a photo of a"  # its first N_CTX_TEXT words initialise the context (when N_CTX_TEXT <= 4)
    node.PREC = "fp16"  # fp16, fp32, amp or bf16
    node.PROMPT_DEPTH_VISION = 9  # vision layers with prompts, the input counted (0: no vision prompts)
    node.PROMPT_DEPTH_TEXT = 9  # text layers with prompts, the input counted (1: the prompt alone)
    return node


CFG = "vit_b16_c2_ep20_batch4_4+4ctx"
RUN = "/CTX_{NCTX}_epo_{EPO}"
EVAL_DIR = EVAL + "/nctx{NCTX}_csc_ctp_epo{EPO}/{DATASET}" + SEED
# No AnchorOPT settings were published for IVLP or PromptSRC: PromptSRC's own schedule, weights 1 (docs/PromptSRC.md).
ANCHOROPT = {"EPO": 20, "NCTX": 4, "ANCHOR_LEN": 1, "PROMPT_CE_WEIGHT": 1.0, "KD_WEIGHT": 1.0, "KD_TEMPERATURE": 1.0}
FAMILIES = (
    # The authors' protocol (20 epochs, 4 + 4 tokens); no IVLP+ATPrompt results were published.
    *atprompt_and_vanilla("base2new", "IVLP", "IVLP", CFG, B2N + RUN + SEED, EVAL_DIR,
                          "TRAINER.IVLP.N_CTX_TEXT {NCTX} TRAINER.IVLP.N_CTX_VISION {NCTX}",
                          atprompt={"EPO": 20, "NCTX": 4}, vanilla={"EPO": 20, "NCTX": 4}),
    anchoropt_base2new("IVLP", "IVLP", CFG, ANCHOROPT, {}),
)


@TRAINER_REGISTRY.register()
class IVLP(DeepPromptTrainer):
    """`TRAINER.IVLP.*` configures the prompts; `TRAINER.ATPROMPT.USE_ATPROMPT` adds the attribute blocks."""

    METHOD = Method(
        "IVLP", "ivlp", "IVLP", order=55, config=config, families=FAMILIES,
        benchmark=TRAIN_AND_EVAL,
        draws=OriginalDraws(anchor_second_clip=None, prompts_in_clip=True), needs_vit=True,
        paper={"IVLP": (84.21, 71.79, 77.51)},
        summary="independent deep prompts in both CLIP towers",
    )
    LEARNER = IVLPPromptLearner
    MODEL = IVLPCLIP
    SAVE_NAME = "VLPromptLearner"

    @classmethod
    def context_length(cls, cfg: CN) -> int:
        return cls.options(cfg).N_CTX_TEXT

    @classmethod
    def learner_options(cls, cfg: CN) -> dict:
        opts = cls.options(cfg)
        return {"n_ctx_vision": opts.N_CTX_VISION, "text_depth": opts.PROMPT_DEPTH_TEXT,
                "vision_depth": opts.PROMPT_DEPTH_VISION, "original_construction": cfg.TRAINER.ORIGINAL_DRAWS,
                "node": cls.METHOD.node}

    @classmethod
    def adapt_state_dict(cls, cfg: CN, model: PromptedCLIP, state: dict, meta: dict,
                         dataset: DatasetBase | None = None) -> dict:
        """The original's checkpoints hold the prompts inside CLIP's modules (`image_encoder.VPT`, `*.transformer.
        resblocks.<i>.VPT_shallow`) and PromptSRC's a second image encoder: the prompts move to the prompt learner,
        the copy is dropped."""
        adapted = {}
        for key, value in state.items():
            tower, _, rest = key.partition(".")
            if key.startswith("prompt_learner.ZS_image_encoder."):
                continue
            if key == "image_encoder.VPT":
                key = "prompt_learner.VPT"
            elif key.endswith(".VPT_shallow") and tower in ("image_encoder", "text_encoder"):
                block = int(rest.split(".")[2])
                key = f"prompt_learner.deep_{'vision' if tower == 'image_encoder' else 'text'}.{block - 1}"
            adapted[key] = value
        return adapted
