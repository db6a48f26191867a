"""CoCoOp (Zhou et al., CVPR 2022) and CoCoOp+ATPrompt: class context conditioned on each image.

A small meta-net maps an image's (normalised) feature to one shift vector that is added to every class-context
token; the attribute blocks are shared and not shifted. Each image therefore has its own class prompts and the
text encoder runs once per (image, class) pair. Those prompts are encoded a chunk of images at a time in one call
each, instead of one call per image as in the original; `use_plain_computation()` restores the per-image loop,
which gives the same numbers.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from clip.model import CLIP
from dassl.engine import TRAINER_REGISTRY
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
)
from trainers.method import BenchmarkCase, Method, OriginalDraws
from trainers.prompting import PromptedCLIP, PromptLearner

# Prompt tokens (images x classes x sequence length) per batched text-encoder call: bounds the activation memory
# of one call (about 0.5 GB per [tokens, 512] fp16 activation) while keeping the calls large.
TOKENS_PER_CALL = 2**19


class MetaNet(nn.Sequential):
    """Image feature [.., E] -> context shift [.., D]: Linear(E, E/16), ReLU, Linear(E/16, D), as the original."""

    def __init__(self, feature_dim: int, width: int) -> None:
        hidden = feature_dim // 16
        super().__init__(
            OrderedDict(linear1=nn.Linear(feature_dim, hidden), relu=nn.ReLU(), linear2=nn.Linear(hidden, width))
        )


class CoCoOpPromptLearner(PromptLearner):
    """The attribute-anchored prompt learner plus the meta-net (checkpoint keys `meta_net.linear1.weight`, ...)."""

    def init_method_parts(self, clip_model: CLIP) -> None:
        self.init_positions()  # AnchorOPT's original drew them before the meta-net
        width = clip_model.ln_final.weight.shape[0]
        # In the model dtype, so PREC fp16 keeps it in half precision like the original.
        self.meta_net = MetaNet(clip_model.visual.output_dim, width).to(clip_model.dtype)

    def shifted_ctx(self, image_features: torch.Tensor) -> torch.Tensor:
        """Each image's class context [B, n_ctx, D]: `ctx` plus the meta-net's shift of its feature [B, E]."""
        return self.ctx + self.meta_net(image_features).unsqueeze(-2)


class CoCoOpCLIP(PromptedCLIP):
    """CLIP with instance-conditioned prompts. Text features depend on the image, so nothing is cached."""

    per_image_loop = False

    def use_plain_computation(self, plain: bool = True) -> CoCoOpCLIP:
        self.per_image_loop = plain
        return super().use_plain_computation(plain)

    def class_features(self, ctx: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised text features of all class prompts built with context `ctx` [..., n_ctx, D] -> [..., n_cls, E]
        (and AnchorOPT's arrangement `positions`)."""
        prompts = self.prompt_learner(ctx, positions)
        return F.normalize(self.text_encoder(prompts, self.prompt_learner.eot), dim=-1)

    def images_per_call(self) -> int:
        """How many images' prompts go through the text encoder together (at least one)."""
        tokens_per_image = self.prompt_learner.n_cls * self.prompt_learner.token_embeds.shape[-2]
        return max(1, TOKENS_PER_CALL // tokens_per_image)

    def class_logits(self, image_features: torch.Tensor) -> torch.Tensor:
        """Logits [B, n_cls]; each image's prompts are encoded separately in the plain computation."""
        ctx = self.prompt_learner.shifted_ctx(image_features)
        positions = self.prompt_learner.positions()  # one arrangement for the whole batch, as the original
        scale = self.logit_scale.exp()
        if self.per_image_loop:
            return torch.stack([scale * f @ self.class_features(c, positions).t()
                                for f, c in zip(image_features, ctx)])
        step = self.images_per_call()
        logits = []
        for start in range(0, len(ctx), step):
            text = self.class_features(ctx[start : start + step].unsqueeze(1), positions)  # [b, n_cls, E]
            logits.append(scale * torch.einsum("be,bce->bc", image_features[start : start + step], text))
        return torch.cat(logits)


def config() -> CN:
    """TRAINER.COCOOP."""
    node = CN()
    node.N_CTX = 16  # number of class-context soft tokens
    node.CTX_INIT = ""  # word initialisation of the context; "" = random
    node.PREC = "fp16"  # fp16, fp32, amp or bf16
    return node


CFG = "vit_b16_c4_ep10_batch1_ctxv1"
OPTIONS = "TRAINER.COCOOP.N_CTX {NCTX}"
FAMILIES = (
    # The original's docs/ATPrompt.md table (2 context tokens; 6 on StanfordCars, Flowers102 and EuroSAT, 4 on UCF101).
    *atprompt_and_vanilla("base2new", "CoCoOp", "CoCoOp", CFG, B2N + "/CTX_{NCTX}_epo_{EPO}" + SEED,
                          EVAL + "/nctx{NCTX}_csc_ctp/{DATASET}" + SEED, OPTIONS,
                          atprompt={"EPO": 10, "NCTX": 2}, vanilla={"EPO": 10, "NCTX": 4},
                          atprompt_per_dataset={"stanford_cars": {"NCTX": 6}, "oxford_flowers": {"NCTX": 6},
                                                "eurosat": {"NCTX": 6}, "ucf101": {"NCTX": 4}}),
    # Cross-dataset: evaluated with the context length trained (the original used 2), in a "_few_shots" folder like
    # the training one, so that it never collides with the base-to-novel evaluation of the same dataset.
    *atprompt_and_vanilla("xd", "CoCoOp", "CoCoOp", CFG, XD_FOLDERS,
                          EVAL + "_few_shots/nctx{NCTX}_csc_ctp/{DATASET}" + SEED, OPTIONS,
                          atprompt={"EPO": 5, "NCTX": 4}, vanilla={"EPO": 5, "NCTX": 4}, source=catalog.XD_SOURCE),
    # AnchorOPT's stage II (the original's docs/AnchorOPT.md table).
    anchoropt_base2new("CoCoOp", "CoCoOp", CFG,
                       {"EPO": 20, "NCTX": 4, "ANCHOR_LEN": 1, "PROMPT_CE_WEIGHT": 10.0, "KD_WEIGHT": 100.0,
                        "KD_TEMPERATURE": 4.0},
                       benchmark_columns({
                           "NCTX": (4, 4, 4, 4, 4, 4, 4, 8, 4, 4, 4),
                           "EPO": (10, 20, 20, 20, 20, 20, 20, 10, 20, 20, 20),
                           "PROMPT_CE_WEIGHT": (100.0, 10.0, 10.0, 100.0, 10.0, 10.0, 10.0, 10.0, 10.0, 100.0, 10.0),
                           "KD_WEIGHT": (100.0, 1000.0, 100.0, 100.0, 100.0, 100.0, 100.0, 1000.0, 100.0, 100.0,
                                         100.0),
                           "KD_TEMPERATURE": (4.0, 4.0, 2.0, 4.0, 4.0, 4.0, 0.5, 2.0, 4.0, 0.5, 0.1),
                       })),
)


@TRAINER_REGISTRY.register()
class CoCoOp(PromptTrainer):
    """`TRAINER.COCOOP.*` configures the context; `TRAINER.ATPROMPT.USE_ATPROMPT` adds the attribute blocks."""

    METHOD = Method(
        "CoCoOp", "cocoop", "COCOOP", order=20, config=config, families=FAMILIES,
        # CoCoOp's configs train with batch 1; 4 images make the batched encoding count without exhausting memory.
        # Evaluation has nothing to cache: one batch tells all.
        benchmark=(BenchmarkCase("train", {0: 2.0}, batch=4), BenchmarkCase("eval", {0: 2.0}, eval_batches=1)),
        draws=OriginalDraws(anchor_second_clip=None),
        paper={"CoCoOp": (80.47, 71.69, 75.83), "CoCoOp_ATP": (81.69, 74.54, 77.95),
               "CoCoOp_AnchorOPT": (81.87, 77.06, 79.39)},
        summary="class context conditioned on each image by a meta-net",
    )
    LEARNER = CoCoOpPromptLearner
    MODEL = CoCoOpCLIP

    @classmethod
    def is_trainable(cls, cfg, name: str) -> bool:
        """With AnchorOPT, the original's CoCoOp variant kept the position logits at their random start (only their
        Gumbel samples vary) and never updated the meta-net; TRAINER.ANCHOROPT.COCOOP_* choose (docs/AnchorOPT.md)."""
        if not super().is_trainable(cfg, name):
            return False
        if anchoropt.enabled(cfg):
            opts = cfg.TRAINER.ANCHOROPT
            if name.endswith("ctx_pos_params"):
                return opts.COCOOP_LEARN_POSITIONS
            if ".meta_net." in name:
                return opts.COCOOP_TRAIN_META_NET
        return True
