"""MaPLe (Khattak et al., CVPR 2023) and MaPLe+ATPrompt: coupled deep prompts in both CLIP towers.

The text tower receives the attribute-anchored prompt of `PromptLearner`; at text layers 1..J-1 the class
context's hidden states are replaced by learnable deep prompts. Each deep text prompt is mapped by its own linear
coupling function into a visual deep prompt that replaces the vision tower's prompt tokens at the same layer; the
vision tower's input carries `proj(ctx)` after the patch tokens. Only the class context is coupled to vision:
attribute blocks and words flow through the text layers untouched. Where the prompt tokens sit in either tower is
`trainers.layout.TokenSlots`' business.

Unlike the original, the replaced positions come from the prompt layout (any number of attributes, attribute
words of any token length, any N_ATT), widths come from the CLIP model, and every precision works.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from clip.model import CLIP, InputHook, LayerHook, VisionTransformer
from dassl.engine import TRAINER_REGISTRY
from dassl.utils.errors import UserError
from trainers.base import PromptTrainer
from trainers.layout import TokenSlots, unused_attribute_blocks
from trainers.prompting import PromptedCLIP, PromptLearner


class MultiModalPromptLearner(PromptLearner):
    """`PromptLearner` plus MaPLe's vision coupling; parameter names are the original's so its checkpoints load.

    - `proj`: Linear(text width -> vision width), maps `ctx` to the shallow visual prompt;
    - `compound_prompts_text`: J-1 deep text prompts [n_ctx, text width];
    - `compound_prompt_projections`: J-1 copies of one Linear(text width -> vision width), the coupling functions.
    """

    def __init__(
        self,
        clip_model: CLIP,
        classnames: Sequence[str],
        n_ctx: int,
        depth: int,
        attributes: Sequence[tuple[str, int]] = (),
        ctx_init: str = "",
        single_token_words: bool = False,
        unused_blocks: Sequence[int] = (),
    ) -> None:
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
        self.depth = depth  # a plain int may be set before Module.__init__; init_method_parts needs it
        super().__init__(clip_model, classnames, n_ctx, attributes, ctx_init, single_token_words=single_token_words,
                         unused_blocks=unused_blocks)
        self.text_slots = TokenSlots.of_block(self.layout, "ctx")
        self.vision_slots = TokenSlots.after_patches(clip_model.visual.positional_embedding.shape[0], n_ctx)

    def init_method_parts(self, clip_model: CLIP) -> None:
        text_width, vision_width = self.ctx.shape[-1], clip_model.visual.conv1.out_channels
        # As in the original: proj in the CLIP dtype (it acts on ctx), the deep prompts and couplings in fp32.
        self.proj = nn.Linear(text_width, vision_width).to(clip_model.dtype)
        self.compound_prompts_text = nn.ParameterList(
            nn.Parameter(nn.init.normal_(torch.empty(self.n_ctx, text_width), std=0.02)) for _ in range(self.depth - 1)
        )
        coupling = nn.Linear(text_width, vision_width)
        self.compound_prompt_projections = nn.ModuleList(copy.deepcopy(coupling) for _ in range(self.depth - 1))

    def text_hook(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Before text layer i in 1..J-1, the class context's hidden states become deep prompt i-1. x: [L, N, D]."""
        if not 1 <= i < self.depth:
            return x
        return self.text_slots.write(x, self.compound_prompts_text[i - 1])

    def vision_prompts(self) -> tuple[InputHook, LayerHook]:
        """The hooks that insert the shallow visual prompt proj(ctx) and then put in the visual deep prompts."""
        shared_ctx = self.proj(self.ctx)
        deep = [couple(p) for couple, p in zip(self.compound_prompt_projections, self.compound_prompts_text)]

        def insert(x: torch.Tensor) -> torch.Tensor:
            return self.vision_slots.insert(x, shared_ctx)

        def hook(i: int, x: torch.Tensor) -> torch.Tensor:
            return self.vision_slots.write(x, deep[i - 1]) if 1 <= i < self.depth else x

        return insert, hook

    def get_extra_state(self) -> dict:
        return {**super().get_extra_state(), "prompt_depth": self.depth}


class MaPLeCLIP(PromptedCLIP):
    """CLIP with MaPLe's prompts in both towers. The text features depend only on the prompt learner, so they are
    cached during evaluation (`PromptedCLIP.text_features`); the visual prompts are a few small matrix products."""

    def _encode_text(self) -> torch.Tensor:
        learner = self.prompt_learner
        features = self.text_encoder(learner(), learner.eot, layer_hook=learner.text_hook)
        return F.normalize(features, dim=-1)

    def image_features(self, image: torch.Tensor) -> torch.Tensor:
        insert, hook = self.prompt_learner.vision_prompts()
        return F.normalize(self.image_encoder(image.type(self.dtype), input_hook=insert, layer_hook=hook), dim=-1)


@TRAINER_REGISTRY.register()
class MaPLe(PromptTrainer):
    """`TRAINER.MAPLE.*` configures the prompts; `TRAINER.ATPROMPT.USE_ATPROMPT` adds the attribute blocks."""

    PREC_NODE = "MAPLE"
    SUPPORTS_ANCHOROPT = False
    SAVE_NAME = "MultiModalPromptLearner"
    SAVE_WHOLE_MODEL = True

    @classmethod
    def build_custom_clip(cls, cfg, clip_model, classnames, attributes):
        opts = cfg.TRAINER.MAPLE
        # The original word-initialises the context only for N_CTX <= 4 (the words of "a photo of a").
        ctx_init = opts.CTX_INIT if opts.N_CTX <= 4 else ""
        if attributes and ctx_init:
            print("Note: CTX_INIT is ignored with ATPrompt (the context is randomly initialised, as in the paper)")
            ctx_init = ""
        learner = MultiModalPromptLearner(
            clip_model,
            classnames,
            n_ctx=opts.N_CTX,
            depth=opts.PROMPT_DEPTH,
            attributes=attributes,
            ctx_init=ctx_init,
            single_token_words=cfg.TRAINER.ATPROMPT.SINGLE_TOKEN_WORDS,
            unused_blocks=unused_attribute_blocks(cfg, attributes),
        )
        return MaPLeCLIP(clip_model, learner)


# The original's name: like the original, it uses ATPrompt only with TRAINER.ATPROMPT.USE_ATPROMPT True.
TRAINER_REGISTRY.register(MaPLe, name="MaPLe_ATP")
