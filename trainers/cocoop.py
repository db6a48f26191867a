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

from clip.model import CLIP
from dassl.engine import TRAINER_REGISTRY
from trainers import anchoropt
from trainers.base import PromptTrainer
from trainers.layout import unused_attribute_blocks
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


@TRAINER_REGISTRY.register()
class CoCoOp(PromptTrainer):
    """`TRAINER.COCOOP.*` configures the context; `TRAINER.ATPROMPT.USE_ATPROMPT` adds the attribute blocks."""

    PREC_NODE = "COCOOP"

    @classmethod
    def build_custom_clip(cls, cfg, clip_model, classnames, attributes):
        opts = cfg.TRAINER.COCOOP
        branch = anchoropt.anchor_prompts(cfg, clip_model, classnames, second_clip=None)
        n_ctx, ctx_init, anchoring = anchoropt.context(cfg, opts.N_CTX, opts.CTX_INIT, attributes)
        learner = CoCoOpPromptLearner(
            clip_model,
            classnames,
            n_ctx=None if ctx_init else n_ctx,
            attributes=attributes,
            ctx_init=ctx_init,
            single_token_words=cfg.TRAINER.ATPROMPT.SINGLE_TOKEN_WORDS,
            unused_blocks=unused_attribute_blocks(cfg, attributes),
            anchoring=anchoring,
        )
        if ctx_init and learner.n_ctx != opts.N_CTX:
            print(f"Note: CTX_INIT '{ctx_init}' sets {learner.n_ctx} context tokens; N_CTX ({opts.N_CTX}) is ignored")
        return anchoropt.build_model(CoCoOpCLIP, cfg, branch, clip_model, learner)

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


# The original's names: like the original, CoCoOp_ATP uses ATPrompt only with TRAINER.ATPROMPT.USE_ATPROMPT True;
# CoCoOp_AnchorOPT always uses AnchorOPT.
TRAINER_REGISTRY.register(CoCoOp, name="CoCoOp_ATP")
TRAINER_REGISTRY.register(CoCoOp, name="CoCoOp_AnchorOPT")
