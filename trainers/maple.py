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
import functools
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from clip.model import CLIP, InputHook, LayerHook, VisionTransformer
from dassl.engine import TRAINER_REGISTRY
from dassl.utils.errors import UserError
from datasets import catalog
from trainers import anchoropt
from trainers.base import PromptTrainer
from trainers.families import (
    B2N,
    EVAL,
    SEED,
    XD_FOLDERS,
    anchoropt_base2new,
    atprompt_and_vanilla,
    benchmark_columns,
    fewshot,
)
from trainers.layout import Anchoring, TokenSlots, arranged_context
from trainers.method import BenchmarkCase, Method, OriginalDraws
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
        anchoring: Anchoring | None = None,
        original_deep_anchor: bool = False,
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
                         unused_blocks=unused_blocks, anchoring=anchoring)
        self.text_slots = TokenSlots.of_block(self.layout, "ctx")
        self.vision_slots = TokenSlots.after_patches(clip_model.visual.positional_embedding.shape[0], n_ctx)
        if anchoring:  # where deep layers read the anchor's hidden state (the original: one position early)
            self.anchor_slots = TokenSlots(self.layout.block_positions("ctx") - int(original_deep_anchor))

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

    def text_hook(self, i: int, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Before text layer i in 1..J-1, the class context's hidden states become deep prompt i-1. x: [L, N, D].

        With AnchorOPT the class-context slots become P @ [deep prompt; the anchor's hidden state], the anchor's
        state read where P put the anchor (its first slot), as the original's deep layers did; an anchor token no
        slot holds is left out of the product. `positions` is the arrangement P of this forward."""
        if not 1 <= i < self.depth:
            return x
        deep = self.compound_prompts_text[i - 1]
        if not self.anchoring:
            return self.text_slots.write(x, deep)
        holders = positions[:, self.n_ctx :].argmax(dim=0)  # [L]: the first slot holding each anchor token
        # Left out as the original did, so that its column of P gets no gradient from a state no slot shows.
        held = positions[:, self.n_ctx :].sum(dim=0) > 0
        positions = torch.cat([positions[:, : self.n_ctx], positions[:, self.n_ctx :] * held], dim=1)
        anchor_states = self.anchor_slots.read(x)[holders].transpose(0, 1)  # [N, L, D]
        slots = arranged_context(deep.to(x.dtype).expand(x.shape[1], -1, -1), anchor_states, positions)
        return self.text_slots.write(x, slots.transpose(0, 1))

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

    TEST_LOGITS_FROM_ENCODER = False  # the image encoder is prompted

    def _encode_text(self) -> torch.Tensor:
        learner = self.prompt_learner
        positions = learner.positions()  # AnchorOPT: one arrangement for the prompts and their deep layers
        hook = functools.partial(learner.text_hook, positions=positions)
        return F.normalize(self.text_encoder(learner(positions=positions), learner.eot, layer_hook=hook), dim=-1)

    def image_features(self, image: torch.Tensor) -> torch.Tensor:
        insert, hook = self.prompt_learner.vision_prompts()
        return F.normalize(self.image_encoder(image.type(self.dtype), input_hook=insert, layer_hook=hook), dim=-1)

    def anchor_image_features(self, image: torch.Tensor, image_features: torch.Tensor) -> torch.Tensor:
        """AnchorOPT's anchor branch scores the unprompted image features: the same encoder without the prompts
        (the original kept a second CLIP for them)."""
        return F.normalize(self.image_encoder(image.type(self.dtype)), dim=-1)


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
# All-class few-shot: no settings of the authors; those of base-to-novel (trainers/families.py `fewshot`).
FAMILIES += fewshot(FAMILIES)


@TRAINER_REGISTRY.register()
class MaPLe(PromptTrainer):
    """`TRAINER.MAPLE.*` configures the prompts; `TRAINER.ATPROMPT.USE_ATPROMPT` adds the attribute blocks."""

    METHOD = Method(
        "MaPLe", "maple", "MAPLE", order=30, config=config, families=FAMILIES,
        benchmark=(BenchmarkCase("train", {0: None}), BenchmarkCase("eval", {0: 8.0})),
        draws=OriginalDraws(anchor_second_clip="before"), needs_vit=True,
        paper={"MaPLe": (82.28, 75.14, 78.55), "MaPLe_ATP": (82.98, 75.76, 79.21),
               "MaPLe_AnchorOPT": (83.62, 77.36, 80.37)},
        summary="coupled deep prompts in both CLIP towers",
    )
    LEARNER = MultiModalPromptLearner
    MODEL = MaPLeCLIP
    CTX_INIT_SETS_LENGTH = False
    SAVE_NAME = "MultiModalPromptLearner"
    SAVE_WHOLE_MODEL = True

    @classmethod
    def context_init(cls, cfg: CN) -> str:
        """The original word-initialises the context only for N_CTX <= 4 (the words of "a photo of a")."""
        opts = cls.options(cfg)
        return opts.CTX_INIT if opts.N_CTX <= 4 else ""

    @classmethod
    def learner_options(cls, cfg: CN) -> dict:
        return {"depth": cls.options(cfg).PROMPT_DEPTH,
                "original_deep_anchor": cfg.TRAINER.ANCHOROPT.ORIGINAL_DEEP_ANCHOR}

    def adapt_state_dict(self, state: dict, meta: dict) -> dict:
        """The original's MaPLe_AnchorOPT checkpoints hold its two CLIPs under other names and the anchor in its
        anchor learner: the prompted CLIP's weights are ours, the unprompted copy is dropped, the anchor moves."""
        if not anchoropt.enabled(self.cfg):
            return state
        renamed = {}
        for key, value in state.items():
            if key == "anchor_prompt_learner.anchor_ctx_1":
                key = "prompt_learner.anchor"
            elif key.startswith(("image_encoder_vanilla.", "text_encoder_vanilla.", "anchor_prompt_learner.")):
                continue
            renamed[key.replace("_encoder_maple.", "_encoder.", 1)] = value
        return renamed
