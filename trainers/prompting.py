"""The prompt learners' shared modules: learnable soft tokens, the text tower they feed, and the prompted CLIP.

- `PromptLearner`: the learnable blocks (`ctx`, `ctx_att1..K`) and their assembly into prompt embeddings, laid out
  by `trainers.layout.PromptLayout`.
- `TextEncoder`: prompt embeddings -> text features, pooled at the EOT token.
- `PromptedCLIP`: image features against the prompted text features, with the text features cached while the
  prompt learner does not change (evaluation computes them once). It also says how a training step turns a batch
  into a loss (`forward_train`, `loss`), so every trainer, precision and the benchmark run one training step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from clip.clip import tokenize
from clip.model import CLIP
from dassl.utils.errors import UserError
from trainers.layout import Anchoring, PromptLayout, arranged_context, arrangement, tokenizer

Outputs = dict[str, torch.Tensor]  # what a training forward gives its loss; "logits" is always there


# --------------------------------------------------------------------------------------------------------------
# Learnable prompts and the text encoder
# --------------------------------------------------------------------------------------------------------------
class LaidOutPrompts(nn.Module):
    """The fixed token embeddings of a `PromptLayout`, and prompt embeddings from its soft tokens (`assemble`).

    The embeddings are computed once from the current class names and are not saved: they are rebuilt for whatever
    classes a model is evaluated on. `truncate` keeps the tokens up to the last EOT (exact: trainers/prompting.py).
    """

    def __init__(self, clip_model: CLIP, layout: PromptLayout, truncate: bool = True) -> None:
        super().__init__()
        self.layout = layout
        length = layout.seq_len if truncate else layout.token_ids.shape[1]
        with torch.no_grad():
            weight = clip_model.token_embedding.weight
            embeds = clip_model.token_embedding(layout.token_ids[:, :length].to(weight.device)).type(clip_model.dtype)
        self.register_buffer("token_embeds", embeds, persistent=False)
        self.register_buffer("gather_idx", layout.gather_index(length).to(weight.device), persistent=False)
        self.register_buffer("eot", layout.eot.to(weight.device), persistent=False)

    def assemble(self, soft: torch.Tensor) -> torch.Tensor:
        """Prompt embeddings [..., n_cls, L, D] with the soft tokens [..., n_soft, D] (in layout order) in place."""
        fixed = self.token_embeds
        lead = torch.broadcast_shapes(soft.shape[:-2], fixed.shape[:-2])
        pool = torch.cat([fixed.expand(*lead, *fixed.shape[-2:]), soft.expand(*lead, *soft.shape[-2:])], dim=-2)
        index = self.gather_idx.expand(*lead, -1).unsqueeze(-1).expand(*lead, -1, pool.shape[-1])
        return pool.gather(-2, index)


class PromptLearner(LaidOutPrompts):
    """Learnable soft tokens laid out by a `PromptLayout`.

    Parameters keep the original's names so its checkpoints load: `ctx` (class context, [n_ctx, D], or
    [n_cls, n_ctx, D] class-specific) and `ctx_att1..K` ([n_att_k, D]). The fixed token embeddings are rebuilt
    from the current class names and are not saved; the layout (words and token counts) is, as extra state.

    With `anchoring` (AnchorOPT) the class context has n_ctx + L slots, filled with the context and the anchor
    [L, D] in the order the position logits `ctx_pos_params` learn (trainers/layout.py); the anchor is a buffer
    (`anchor`) set from an anchor file, saved with the checkpoint so that a model keeps the anchor it learned with.

    Random values are drawn in the original's order: the context, then what a method adds (`init_method_parts`:
    CoCoOp's meta-net, MaPLe's projections and deep prompts, with AnchorOPT's position logits where its original
    drew them), then the attribute blocks, then `unused_blocks`: blocks of these sizes that the original drew and
    never used (it always drew three), whose values are dropped.
    """

    def __init__(
        self,
        clip_model: CLIP,
        classnames: Sequence[str],
        n_ctx: int | None,
        attributes: Sequence[tuple[str, int]] = (),
        ctx_init: str = "",
        csc: bool = False,
        class_position: str = "end",
        single_token_words: bool = False,
        truncate: bool = True,
        unused_blocks: Sequence[int] = (),
        anchoring: Anchoring | None = None,
    ) -> None:
        extra = anchoring.length if anchoring else 0
        if anchoring and (ctx_init or n_ctx is None):
            raise ValueError("AnchorOPT's context is random: pass n_ctx and no ctx_init")
        slots = None if n_ctx is None else n_ctx + extra
        layout = PromptLayout(classnames, slots, attributes, ctx_init, class_position, single_token_words)
        super().__init__(clip_model, layout, truncate)
        self.single_token_words, self.class_position, self.csc = single_token_words, class_position, csc
        self.classnames = list(classnames)
        self.n_cls, self.n_ctx = len(classnames), layout.n_ctx - extra
        n_ctx, embeds = self.n_ctx, self.token_embeds
        dtype = clip_model.dtype
        width = clip_model.ln_final.weight.shape[0]

        if ctx_init:
            init = embeds[0, layout.block_positions("ctx")[0]]
            ctx = init.repeat(self.n_cls, 1, 1) if csc else init.clone()
        else:
            ctx = torch.empty(self.n_cls, n_ctx, width, dtype=dtype) if csc else torch.empty(n_ctx, width, dtype=dtype)
            nn.init.normal_(ctx, std=0.02)
        self.ctx = nn.Parameter(ctx)
        self.anchoring = anchoring
        if anchoring:
            self.register_buffer("anchor", torch.zeros(extra, width, dtype=dtype, device=ctx.device))
            self.anchor_origin: str | None = None  # where `anchor` came from; None: not set yet
            self.anchor_missing = "no anchor was given (TRAINER.ANCHOROPT.ANCHOR_WEIGHTS)"
            if anchoring.original_eot:
                self.eot = self.eot - extra
        self.init_method_parts(clip_model)
        if anchoring and not hasattr(self, "ctx_pos_params"):
            raise RuntimeError(f"{type(self).__name__}.init_method_parts must call init_positions()")
        for name, n in layout.blocks[:-1]:
            setattr(self, name, nn.Parameter(nn.init.normal_(torch.empty(n, width, dtype=dtype), std=0.01)))
        for n in unused_blocks:
            nn.init.normal_(torch.empty(n, width, dtype=dtype), std=0.01)

    def init_method_parts(self, clip_model: CLIP) -> None:
        """Hook for a method's own modules, created between the context and the attribute blocks; it calls
        `init_positions` where the method's original drew AnchorOPT's position logits (here: first)."""
        self.init_positions()

    def init_positions(self) -> None:
        """AnchorOPT's position logits `ctx_pos_params` [k, k] (k = n_ctx + anchor length; nothing without
        AnchorOPT), `torch.randn` in fp32 as the original (cast to the context's dtype where used)."""
        if self.anchoring:
            k = self.layout.n_ctx
            self.ctx_pos_params = nn.Parameter(torch.randn(k, k, device=self.ctx.device))

    @property
    def attributes(self) -> list[tuple[str, int]]:
        return self.layout.attributes

    def soft_tokens(self, ctx: torch.Tensor | None = None, positions: torch.Tensor | None = None) -> torch.Tensor:
        """All soft tokens in layout order, [..., n_soft, D]; `ctx` replaces the class context (CoCoOp's shift),
        `positions` is AnchorOPT's arrangement when one is drawn for several calls (else drawn here)."""
        blocks = [getattr(self, name) for name, _ in self.layout.blocks[:-1]]
        blocks.append(self.class_context(ctx, positions))
        lead = torch.broadcast_shapes(*(b.shape[:-2] for b in blocks))
        return torch.cat([b.expand(*lead, *b.shape[-2:]) for b in blocks], dim=-2)

    def class_context(self, ctx: torch.Tensor | None = None, positions: torch.Tensor | None = None) -> torch.Tensor:
        """The tokens of the class-context slots: the context, or with AnchorOPT the arranged context and anchor."""
        ctx = self.ctx if ctx is None else ctx
        if not self.anchoring:
            return ctx
        return arranged_context(ctx, self.anchor_tokens(), self.positions() if positions is None else positions)

    # -- AnchorOPT -----------------------------------------------------------------------------------------------
    @property
    def is_random(self) -> bool:
        """Whether each forward draws a new arrangement (so its prompts must not be cached)."""
        return bool(self.anchoring) and (self.training or self.anchoring.eval_gumbel)

    def positions(self) -> torch.Tensor | None:
        """The arrangement P of the class-context slots (trainers/layout.py); None without AnchorOPT. A forward
        that builds prompts in several calls draws it once and passes it to each."""
        if not self.anchoring:
            return None
        logits = self.ctx_pos_params.to(self.ctx.dtype)
        return arrangement(logits, self.anchoring.gumbel_temp, self.is_random)

    def anchor_tokens(self) -> torch.Tensor:
        if self.anchor_origin is None:
            raise UserError(self.anchor_missing)
        return self.anchor

    def set_anchor(self, anchor: torch.Tensor, origin: str) -> None:
        with torch.no_grad():
            self.anchor.copy_(anchor)
        self.anchor_origin = origin

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        if self.anchoring and prefix + "anchor" in state_dict:
            self.anchor_origin = "the checkpoint"
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, ctx: torch.Tensor | None = None, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Prompt embeddings [..., n_cls, L, D]; leading dims come from a batched `ctx` ([B, 1, n_ctx, D])."""
        return self.assemble(self.soft_tokens(ctx, positions))

    def get_extra_state(self) -> dict:
        """The layout the learned tokens belong to. A class-specific context (CSC) belongs to its classes too."""
        state = {
            "attributes": [w for w, _ in self.attributes],
            "n_att": [n for _, n in self.attributes],
            "n_ctx": self.n_ctx,
            "single_token_words": self.single_token_words,
            "class_position": self.class_position,
            "csc": self.csc,
            "anchor_len": self.anchoring.length if self.anchoring else 0,
        }
        return {**state, "classnames": self.classnames} if self.csc else state

    def set_extra_state(self, state: dict) -> None:
        """Refuse the tokens of another layout; fields an older checkpoint lacks are not compared."""
        mine = self.get_extra_state()
        diff = [f"{k}: checkpoint {state.get(k)!r}, model {v!r}" for k, v in mine.items() if state.get(k, v) != v]
        if any(d.startswith("classnames") for d in diff):
            diff.insert(0, "a class-specific context (CSC) only fits the classes it was learned for")
        if diff:
            raise UserError("the checkpoint's prompt layout does not match the model (" + "; ".join(diff) + ")")


class TextEncoder(nn.Module):
    """CLIP's text tower on prompt embeddings: add positions, transformer, pool at EOT, project.

    The transformer is causal and pools at the EOT token, so prompts are only as long as their longest EOT needs;
    the result equals the full 77-token computation, which `full_context` restores (zero padding after every EOT).
    """

    def __init__(self, clip_model: CLIP) -> None:
        super().__init__()
        self.transformer = clip_model.transformer
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.dtype = clip_model.dtype
        self.full_context = False

    def forward(self, prompts: torch.Tensor, eot: torch.Tensor, layer_hook=None) -> torch.Tensor:
        """prompts [..., N, L, D], eot [N] -> features [..., N, E]."""
        if self.full_context:
            prompts = F.pad(prompts, (0, 0, 0, self.positional_embedding.shape[0] - prompts.shape[-2]))
        lead, (length, width) = prompts.shape[:-2], prompts.shape[-2:]
        x = prompts.reshape(-1, length, width) + self.positional_embedding[:length].type(self.dtype)
        x = self.transformer(x.permute(1, 0, 2), layer_hook=layer_hook).permute(1, 0, 2)
        rows = torch.arange(x.shape[0], device=x.device)
        x = self.ln_final(x[rows, eot.repeat(x.shape[0] // eot.shape[0])]).type(self.dtype)
        return (x @ self.text_projection).reshape(*lead, -1)


def fitting_token_ids(prompts: list[str], context_length: int) -> torch.Tensor:
    """The token ids of hand-written prompts; a prompt longer than CLIP's context (a long class name in a template)
    is one error naming it, as for learned prompts."""
    for prompt in prompts:
        length = len(tokenizer().encode(prompt)) + 2  # with the start and end tokens
        if length > context_length:
            raise UserError(f"the prompt {prompt!r} needs {length} tokens, more than CLIP's context of "
                            f"{context_length}: use a shorter class name (or template)")
    return tokenize(prompts, context_length)


class FixedPrompts(nn.Module):
    """Hand-written prompts (templates, class descriptions): their normalised text features [N, E], computed once.

    The prompts' token ids are kept, truncated after the last EOT, until the features are first asked for; they are
    then embedded and encoded where the model runs, `CHUNK` prompts per call, and only the features are kept. With
    `ensemble` > 1 the prompts are that many groups of N (one group per template, each listing the N classes): a
    class's feature is then the normalised mean of its prompts' raw features (PromptSRC's text teacher).
    """

    CHUNK = 1024

    def __init__(self, clip_model: CLIP, prompts: Sequence[str], ensemble: int = 1) -> None:
        super().__init__()
        ids = fitting_token_ids(list(prompts), clip_model.context_length)
        if len(ids) % ensemble:
            raise ValueError(f"{len(ids)} prompts do not make {ensemble} groups of the same size")
        eot = ids.argmax(dim=-1)
        self.ensemble, self.dtype = ensemble, clip_model.dtype
        self.token_embedding = clip_model.token_embedding.weight.detach()  # CLIP's own, wherever it stays
        self.register_buffer("ids", ids[:, : int(eot.max()) + 1], persistent=False)
        self.register_buffer("eot", eot, persistent=False)
        self.register_buffer("features", None, persistent=False)

    @torch.no_grad()
    def encode(self, text_encoder: TextEncoder) -> torch.Tensor:
        if self.features is None:
            chunks = []
            for i in range(0, len(self.eot), self.CHUNK):
                ids = self.ids[i : i + self.CHUNK]
                embeds = F.embedding(ids.to(self.token_embedding.device), self.token_embedding).type(self.dtype)
                chunks.append(text_encoder(embeds.to(ids.device), self.eot[i : i + self.CHUNK]).float())
            features = torch.cat(chunks)
            self.features = F.normalize(features.view(self.ensemble, -1, features.shape[-1]).mean(dim=0), dim=-1)
            self.ids = None
        return self.features


class PromptedCLIP(nn.Module):
    """CLIP whose class text features come from a prompt learner: the CoOp family's CustomCLIP.

    Attribute names follow the original (`prompt_learner`, `image_encoder`, `text_encoder`, `logit_scale`) so the
    state dicts of whole-model checkpoints keep their keys.
    """

    # Whether `forward(image)` is `logits_from_encoded(encode_image(image))`: the test logits then come from the
    # frozen, unprompted image encoder alone, and evaluation may score cached image features
    # (dassl/engine/feature_cache.py). A subclass that changes how images are encoded or scored (`ENCODING_METHODS`)
    # says again whether this holds; its class is refused otherwise.
    TEST_LOGITS_FROM_ENCODER = True
    ENCODING_METHODS = ("forward", "encode_image", "image_features", "features_from_encoded", "logits_from_encoded",
                        "anchor_image_features")

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        changed = sorted(set(cls.ENCODING_METHODS) & vars(cls).keys())
        if changed and "TEST_LOGITS_FROM_ENCODER" not in vars(cls):
            raise TypeError(f"{cls.__name__} overrides {', '.join(changed)}: set TEST_LOGITS_FROM_ENCODER in the class "
                            "(True only if forward(image) is still logits_from_encoded(encode_image(image)))")

    def __init__(self, clip_model: CLIP, prompt_learner: PromptLearner) -> None:
        super().__init__()
        self.prompt_learner = prompt_learner
        self.cache_text = True
        self.image_encoder = clip_model.visual
        self.text_encoder = TextEncoder(clip_model)
        self.logit_scale = clip_model.logit_scale
        self.dtype = clip_model.dtype
        self._cache: tuple[tuple, torch.Tensor] | None = None

    def use_plain_computation(self, plain: bool = True) -> PromptedCLIP:
        """Compute as the original did, the reference every fast path must equal: every prompt over the full context
        and the text features recomputed for every batch (subclasses add their own, e.g. CoCoOp's per-image loop)."""
        self.cache_text = not plain
        self.text_encoder.full_context = plain
        return self

    def text_features(self) -> torch.Tensor:
        """Normalised class text features [n_cls, E]; reused without autograd until a prompt parameter changes."""
        # A prompt learner may draw its prompts at random (AnchorOPT sampling an arrangement): never cached then.
        if torch.is_grad_enabled() or not self.cache_text or getattr(self.prompt_learner, "is_random", False):
            return self._encode_text()
        state = [*self.prompt_learner.parameters(), *self.prompt_learner.buffers()]
        key = tuple((id(t), t._version) for t in state) + (id(self.prompt_learner),)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._encode_text())
        return self._cache[1]

    def _encode_text(self) -> torch.Tensor:
        features = self.text_encoder(self.prompt_learner(), self.prompt_learner.eot)
        return F.normalize(features, dim=-1)

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """The frozen, unprompted image encoder's output [B, E], un-normalised: what the feature cache keeps."""
        return self.image_encoder(image.type(self.dtype))

    def features_from_encoded(self, encoded: torch.Tensor) -> torch.Tensor:
        """The image features `class_logits` takes, from `encode_image`'s output: normalised here."""
        return F.normalize(encoded, dim=-1)

    def image_features(self, image: torch.Tensor) -> torch.Tensor:
        """The image features [B, E] `class_logits` takes (a method that prompts the image encoder overrides it)."""
        return self.features_from_encoded(self.encode_image(image))

    def class_logits(self, image_features: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        """Class logits [B, n_cls] of normalised image features against the prompted class text features (`text`
        when the caller has them already)."""
        return self.logit_scale.exp() * image_features @ (self.text_features() if text is None else text).t()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Class logits [B, n_cls]: what evaluation uses."""
        return self.class_logits(self.image_features(image))

    def logits_from_encoded(self, encoded: torch.Tensor) -> torch.Tensor:
        """`forward(image)` from `encode_image(image)`: how evaluation scores cached image features. A class that
        writes its own `forward` writes this too, or declares TEST_LOGITS_FROM_ENCODER False (then it is evaluated
        without the cache, dassl/engine/feature_cache.py); a class that does neither is refused when defined."""
        return self.class_logits(self.features_from_encoded(encoded))

    def anchor_image_features(self, image: torch.Tensor | None, image_features: torch.Tensor) -> torch.Tensor:
        """The normalised image features AnchorOPT's anchor branch scores: those of `image_features` (this model's
        own); a method that prompts the image encoder gives the unprompted ones. `image` is None when the features
        came from the feature cache, which only serves models whose anchor features derive from `image_features`."""
        return image_features

    def forward_train(self, image: torch.Tensor) -> Outputs:
        """What `loss` needs from a training batch: the logits and the image features they came from (a plug-in
        such as AnchorOPT scores them against other prompts); methods with more loss terms return more."""
        features = self.image_features(image)
        return {"logits": self.class_logits(features), "image_features": features}

    def loss(self, outputs: Outputs, label: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs["logits"], label)
