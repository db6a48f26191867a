"""The one home for what every prompt-learning trainer shares.

- `load_clip`: CLIP from `MODEL.BACKBONE.NAME` (an OpenAI model name, an open_clip `<model>/<tag>` or a checkpoint
  file; docs/BACKBONES.md).
- `PromptLayout`: where each soft token goes in the attribute-anchored prompt
  `[SOS][A1][w1][A2][w2]...[ctx][class name].[EOS]` (K = 0 attributes is vanilla CoOp).
- `PromptLearner`: the learnable blocks (`ctx`, `ctx_att1..K`) and their assembly into prompt embeddings.
- `TextEncoder`: prompt embeddings -> text features, pooled at the EOT token.
- `PromptedCLIP`: image features against the prompted text features, with the text features cached while the
  prompt learner does not change (evaluation computes them once).
- the attribute defaults of the paper per dataset, and how a config selects attributes.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from yacs.config import CfgNode

from clip.clip import load_model
from clip.model import CLIP
from clip.simple_tokenizer import SimpleTokenizer

CONTEXT_LENGTH = 77
PLACEHOLDER = "X"  # the word the original templates put where soft tokens go

# The attributes the paper selected for each dataset (searched results, README Table 1). The ImageNet variants use
# ImageNet's, since models evaluated on them are trained on ImageNet.
DATASET_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "ImageNet": ("color", "shape"),
    "Caltech101": ("shape", "size"),
    "OxfordPets": ("playfulness", "energy"),
    "StanfordCars": ("luxury",),
    "OxfordFlowers": ("color", "habitat", "growth"),
    "Food101": ("flavor", "preparation"),
    "FGVCAircraft": ("design", "range"),
    "SUN397": ("function",),
    "DescribableTextures": ("pattern", "color", "design"),
    "EuroSAT": ("habitat",),
    "UCF101": ("precision",),
    "AttributeWorld": ("color", "shape"),
}
for _variant in ("ImageNetV2", "ImageNetSketch", "ImageNetA", "ImageNetR"):
    DATASET_ATTRIBUTES[_variant] = DATASET_ATTRIBUTES["ImageNet"]

# The five attribute bases the LLM proposed for each dataset: the candidates of the attribute search.
ATTRIBUTE_BASES: dict[str, tuple[str, ...]] = {
    "ImageNet": ("color", "size", "shape", "habitat", "behavior"),
    "Caltech101": ("shape", "color", "material", "function", "size"),
    "OxfordPets": ("loyalty", "affection", "playfulness", "energy", "intelligence"),
    "StanfordCars": ("design", "engine", "performance", "luxury", "color"),
    "OxfordFlowers": ("color", "flower", "habitat", "growth", "season"),
    "Food101": ("flavor", "texture", "origin", "ingredients", "preparation"),
    "FGVCAircraft": ("design", "capacity", "range", "engines", "liveries"),
    "SUN397": ("architecture", "environment", "structure", "design", "function"),
    "DescribableTextures": ("pattern", "texture", "color", "design", "structure"),
    "EuroSAT": ("habitat", "foliage", "infrastructure", "terrain", "watercourse"),
    "UCF101": ("precision", "coordination", "technique", "strength", "control"),
    "AttributeWorld": ("color", "shape", "size", "pattern", "texture"),
}


@functools.lru_cache(maxsize=1)
def tokenizer() -> SimpleTokenizer:
    return SimpleTokenizer()


def clean_classname(name: str) -> str:
    return name.replace("_", " ")


# --------------------------------------------------------------------------------------------------------------
# Configuration -> attributes
# --------------------------------------------------------------------------------------------------------------
def attributes_from_cfg(cfg: CfgNode, enabled: bool | None = None) -> list[tuple[str, int]]:
    """The (word, number of soft tokens) pairs a config asks for; [] when ATPrompt is off.

    `enabled` overrides `TRAINER.ATPROMPT.USE_ATPROMPT` (the `*_ATP` trainer names always use ATPrompt).

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
                raise ValueError(f"TRAINER.ATPROMPT.ATT_NUM is {atp.ATT_NUM} but {', '.join(missing)} not set")
            if missing:  # ATT_NUM alone (as the original scripts pass it) selects the dataset's table
                words = []
        else:
            words = [w for w in given if w != "none"]
    if not words:
        name = cfg.DATASET.NAME
        if name not in DATASET_ATTRIBUTES:
            raise ValueError(
                f"TRAINER.ATPROMPT.USE_ATPROMPT is on but no attributes are given and dataset '{name}' has no "
                f"default; set TRAINER.ATPROMPT.ATTRIBUTES, e.g. \"['color', 'shape']\" "
                f"(defaults exist for: {', '.join(sorted(DATASET_ATTRIBUTES))})"
            )
        words = list(DATASET_ATTRIBUTES[name])
    return list(zip(words, _tokens_per_attribute(atp, len(words))))


def _tokens_per_attribute(atp: CfgNode, k: int) -> list[int]:
    counts = [int(n) for n in atp.N_ATTS]
    if len(counts) == 1:
        counts = counts * k
    elif not counts:  # the original keys; attributes beyond the third reuse N_ATT1
        counts = [atp.get(f"N_ATT{i + 1}", atp.N_ATT1) for i in range(k)]
    if len(counts) != k:
        raise ValueError(f"TRAINER.ATPROMPT.N_ATTS has {len(counts)} values for {k} attributes; give 1 or {k}")
    if any(n < 0 for n in counts):
        raise ValueError(f"soft tokens per attribute must be >= 0, got {counts}")
    return counts


# --------------------------------------------------------------------------------------------------------------
# CLIP and precision
# --------------------------------------------------------------------------------------------------------------
PRECISIONS = ("fp16", "fp32", "amp", "bf16")


def load_clip(cfg: CfgNode) -> CLIP:
    """CLIP on the CPU from `MODEL.BACKBONE.NAME` (see `clip.load_model`), in OpenAI's fp16 layout.

    `clip.load_model` also gives the checkpoint's preprocessing, to compare with `INPUT.SIZE` / `PIXEL_MEAN` /
    `PIXEL_STD`."""
    root = cfg.MODEL.BACKBONE.get("DOWNLOAD_ROOT", "") or None
    return load_model(cfg.MODEL.BACKBONE.NAME, download_root=root)[0]


def resolve_precision(prec: str, device: torch.device) -> str:
    """The precision that will actually run: fp16 and amp need a GPU, so CPU runs use fp32 instead."""
    if prec not in PRECISIONS:
        raise ValueError(f"PREC must be one of {', '.join(PRECISIONS)}, got '{prec}'")
    if device.type == "cpu" and prec in ("fp16", "amp"):
        print(f"Note: PREC '{prec}' needs a GPU; running in fp32 on the CPU")
        return "fp32"
    return prec


def autocast(prec: str, device: torch.device):
    """The autocast context for a precision (amp: fp16, bf16: bfloat16; fp16/fp32 run the weights' dtype)."""
    dtype = {"amp": torch.float16, "bf16": torch.bfloat16}.get(prec)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


# --------------------------------------------------------------------------------------------------------------
# The prompt layout
# --------------------------------------------------------------------------------------------------------------
class PromptLayout:
    """Token ids of every class's prompt and the position of every soft token in it.

    Soft tokens are numbered in block order: the attribute blocks A1..AK, then the class context. `soft_positions`
    [n_cls, n_soft] gives each one's position in each class's sequence; everything else is the fixed token at that
    position. Attribute words keep all their BPE tokens ("playfulness" is two); `single_token_words` reproduces the
    original's layout, which assumed one token per word and so shifted every later soft block onto fixed tokens.
    """

    def __init__(
        self,
        classnames: Sequence[str],
        n_ctx: int | None,
        attributes: Sequence[tuple[str, int]] = (),
        ctx_init: str = "",
        class_position: str = "end",
        single_token_words: bool = False,
        context_length: int = CONTEXT_LENGTH,
    ) -> None:
        """`n_ctx` None makes every token of `ctx_init` learnable (CoOp's and CoCoOp's word initialisation)."""
        if class_position not in ("end", "middle", "front"):
            raise ValueError(f"CLASS_TOKEN_POSITION must be end, middle or front, got '{class_position}'")
        tok = tokenizer()
        sot, eot = tok.encoder["<|startoftext|>"], tok.encoder["<|endoftext|>"]
        x = tok.encode(PLACEHOLDER)[0]
        ctx_ids = tok.encode(ctx_init) if ctx_init else [x] * (n_ctx or 0)
        n_ctx = len(ctx_ids) if n_ctx is None else n_ctx
        if len(ctx_ids) < n_ctx:
            raise ValueError(f"CTX_INIT '{ctx_init}' has {len(ctx_ids)} tokens, fewer than N_CTX = {n_ctx}")
        self.attributes = [(str(w), int(n)) for w, n in attributes]
        self.n_ctx = n_ctx
        self.blocks = [(f"ctx_att{k + 1}", n) for k, (_, n) in enumerate(self.attributes)] + [("ctx", n_ctx)]

        # The class-independent head: SOS, then each attribute's soft block and word.
        head, head_soft = [sot], []
        for word, n in self.attributes:
            word_ids = tok.encode(word)
            if not word_ids:
                raise ValueError(f"attribute word '{word}' is empty after tokenisation")
            if single_token_words and len(word_ids) > 1:
                warnings.warn(
                    f"SINGLE_TOKEN_WORDS: '{word}' is {len(word_ids)} tokens; the original's layout drops all but its "
                    "first and shifts the later blocks, as the original code did",
                    stacklevel=2,
                )
            head_soft.extend(range(len(head), len(head) + n))
            head += [x] * n + word_ids
        if single_token_words:  # soft blocks where they would be if every word were one token
            head_soft, pos = [], 1
            for _, n in self.attributes:
                head_soft.extend(range(pos, pos + n))
                pos += n + 1

        ctx_fixed = ctx_ids[n_ctx:]  # e.g. MaPLe's "of a" when 2 of "a photo of a" are learnable
        if ctx_fixed and class_position != "end":
            raise ValueError("a CTX_INIT longer than N_CTX only works with CLASS_TOKEN_POSITION 'end'")
        ctx_start = len(head) if not single_token_words else 1 + sum(n + 1 for _, n in self.attributes)

        ids, soft = [], []
        for name in classnames:
            name_dot = tok.encode(clean_classname(name) + ".")
            n_name = len(tok.encode(clean_classname(name)))
            row, ctx_pos = list(head), []
            if class_position == "end":
                ctx_pos = list(range(len(row), len(row) + n_ctx))
                row += ctx_ids + name_dot
            elif class_position == "middle":
                half = n_ctx // 2
                ctx_pos = list(range(len(row), len(row) + half))
                row += [x] * half + name_dot[:n_name]
                ctx_pos += list(range(len(row), len(row) + n_ctx - half))
                row += [x] * (n_ctx - half) + name_dot[n_name:]
            else:
                row += name_dot[:n_name]
                ctx_pos = list(range(len(row), len(row) + n_ctx))
                row += [x] * n_ctx + name_dot[n_name:]
            if single_token_words:
                ctx_pos = [p - len(head) + ctx_start for p in ctx_pos]
            if len(row) + 1 > context_length:
                raise ValueError(
                    f"the prompt for class '{name}' needs {len(row) + 1} tokens, more than CLIP's context of "
                    f"{context_length}: use fewer soft tokens (N_CTX, N_ATT*), fewer or shorter attribute words, "
                    f"or a shorter class name"
                )
            ids.append(row + [eot] + [0] * (context_length - len(row) - 1))
            soft.append(head_soft + ctx_pos)
        self.token_ids = torch.tensor(ids, dtype=torch.long)
        self.soft_positions = torch.tensor(soft, dtype=torch.long).reshape(len(ids), -1)
        self.eot = self.token_ids.argmax(dim=-1)
        self.seq_len = int(self.eot.max()) + 1  # positions after the last EOT never influence a causal encoder

    @property
    def n_soft(self) -> int:
        return self.soft_positions.shape[1]

    def block_positions(self, block: str) -> torch.Tensor:
        """Positions [n_cls, n] of one soft block ("ctx_att1", ..., "ctx") in every class's sequence."""
        start = 0
        for name, n in self.blocks:
            if name == block:
                return self.soft_positions[:, start : start + n]
            start += n
        raise KeyError(f"no soft block '{block}' in this layout (blocks: {[b for b, _ in self.blocks]})")

    def gather_index(self, length: int) -> torch.Tensor:
        """Index [n_cls, length] into cat([fixed embeddings[:length], soft tokens]) giving each prompt."""
        index = torch.arange(length).repeat(len(self.token_ids), 1)
        soft_ids = length + torch.arange(self.n_soft).expand_as(self.soft_positions)
        return index.scatter(1, self.soft_positions, soft_ids)


# --------------------------------------------------------------------------------------------------------------
# Learnable prompts and the text encoder
# --------------------------------------------------------------------------------------------------------------
class PromptLearner(nn.Module):
    """Learnable soft tokens laid out by a `PromptLayout`.

    Parameters keep the original's names so its checkpoints load: `ctx` (class context, [n_ctx, D], or
    [n_cls, n_ctx, D] class-specific) and `ctx_att1..K` ([n_att_k, D]). The fixed token embeddings are rebuilt
    from the current class names and are not saved; the layout (words and token counts) is, as extra state.
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
    ) -> None:
        super().__init__()
        layout = PromptLayout(classnames, n_ctx, attributes, ctx_init, class_position, single_token_words)
        self.layout, self.single_token_words = layout, single_token_words
        self.n_cls, self.n_ctx = len(classnames), layout.n_ctx
        n_ctx = layout.n_ctx
        dtype = clip_model.dtype
        width = clip_model.ln_final.weight.shape[0]
        length = layout.seq_len if truncate else layout.token_ids.shape[1]
        with torch.no_grad():
            weight = clip_model.token_embedding.weight
            embeds = clip_model.token_embedding(layout.token_ids[:, :length].to(weight.device)).type(dtype)
        self.register_buffer("token_embeds", embeds, persistent=False)
        self.register_buffer("gather_idx", layout.gather_index(length).to(weight.device), persistent=False)
        self.register_buffer("eot", layout.eot.to(weight.device), persistent=False)

        if ctx_init:
            init = embeds[0, layout.block_positions("ctx")[0]]
            ctx = init.repeat(self.n_cls, 1, 1) if csc else init.clone()
        else:
            ctx = torch.empty(self.n_cls, n_ctx, width) if csc else torch.empty(n_ctx, width)
            nn.init.normal_(ctx, std=0.02)
        self.ctx = nn.Parameter(ctx.to(dtype))
        for name, n in layout.blocks[:-1]:
            setattr(self, name, nn.Parameter(nn.init.normal_(torch.empty(n, width), std=0.01).to(dtype)))

    @property
    def attributes(self) -> list[tuple[str, int]]:
        return self.layout.attributes

    def soft_tokens(self, ctx: torch.Tensor | None = None) -> torch.Tensor:
        """All soft tokens in layout order, [..., n_soft, D]; `ctx` replaces the class context (CoCoOp's shift)."""
        blocks = [getattr(self, name) for name, _ in self.layout.blocks[:-1]]
        blocks.append(self.ctx if ctx is None else ctx)
        lead = torch.broadcast_shapes(*(b.shape[:-2] for b in blocks))
        return torch.cat([b.expand(*lead, *b.shape[-2:]) for b in blocks], dim=-2)

    def forward(self, ctx: torch.Tensor | None = None) -> torch.Tensor:
        """Prompt embeddings [..., n_cls, L, D]; leading dims come from a batched `ctx` ([B, 1, n_ctx, D])."""
        soft = self.soft_tokens(ctx)
        fixed = self.token_embeds
        lead = torch.broadcast_shapes(soft.shape[:-2], fixed.shape[:-2])
        pool = torch.cat([fixed.expand(*lead, *fixed.shape[-2:]), soft.expand(*lead, *soft.shape[-2:])], dim=-2)
        index = self.gather_idx.expand(*lead, -1).unsqueeze(-1).expand(*lead, -1, pool.shape[-1])
        return pool.gather(-2, index)

    def get_extra_state(self) -> dict:
        return {
            "attributes": [w for w, _ in self.attributes],
            "n_att": [n for _, n in self.attributes],
            "n_ctx": self.n_ctx,
            "single_token_words": self.single_token_words,
        }

    def set_extra_state(self, state: dict) -> None:
        mine = self.get_extra_state()
        diff = [f"{k}: checkpoint {state.get(k)!r}, model {v!r}" for k, v in mine.items() if state.get(k, v) != v]
        if diff:
            raise ValueError("the checkpoint's prompt layout does not match the model (" + "; ".join(diff) + ")")


class TextEncoder(nn.Module):
    """CLIP's text tower on prompt embeddings: add positions, transformer, pool at EOT, project.

    The transformer is causal and pools at the EOT token, so prompts are only as long as their longest EOT needs;
    the result equals the full 77-token computation.
    """

    def __init__(self, clip_model: CLIP) -> None:
        super().__init__()
        self.transformer = clip_model.transformer
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.dtype = clip_model.dtype

    def forward(self, prompts: torch.Tensor, eot: torch.Tensor, layer_hook=None) -> torch.Tensor:
        """prompts [..., N, L, D], eot [N] -> features [..., N, E]."""
        lead, (length, width) = prompts.shape[:-2], prompts.shape[-2:]
        x = prompts.reshape(-1, length, width) + self.positional_embedding[:length].type(self.dtype)
        x = self.transformer(x.permute(1, 0, 2), layer_hook=layer_hook).permute(1, 0, 2)
        rows = torch.arange(x.shape[0], device=x.device)
        x = self.ln_final(x[rows, eot.repeat(x.shape[0] // eot.shape[0])]).type(self.dtype)
        return (x @ self.text_projection).reshape(*lead, -1)


class PromptedCLIP(nn.Module):
    """CLIP whose class text features come from a prompt learner: the CoOp family's CustomCLIP.

    Attribute names follow the original (`prompt_learner`, `image_encoder`, `text_encoder`, `logit_scale`) so the
    state dicts of whole-model checkpoints keep their keys.
    """

    def __init__(self, clip_model: CLIP, prompt_learner: PromptLearner, cache_text: bool = True) -> None:
        """`cache_text` False recomputes the text features on every call (the plain computation, for comparison)."""
        super().__init__()
        self.prompt_learner = prompt_learner
        self.cache_text = cache_text
        self.image_encoder = clip_model.visual
        self.text_encoder = TextEncoder(clip_model)
        self.logit_scale = clip_model.logit_scale
        self.dtype = clip_model.dtype
        self._cache: tuple[tuple, torch.Tensor] | None = None

    def text_features(self) -> torch.Tensor:
        """Normalised class text features [n_cls, E]; reused without autograd until a prompt parameter changes."""
        if torch.is_grad_enabled() or not self.cache_text:
            return self._encode_text()
        key = tuple((id(p), p._version) for p in self.prompt_learner.parameters()) + (id(self.prompt_learner),)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._encode_text())
        return self._cache[1]

    def _encode_text(self) -> torch.Tensor:
        features = self.text_encoder(self.prompt_learner(), self.prompt_learner.eot)
        return F.normalize(features, dim=-1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        image_features = F.normalize(self.image_encoder(image.type(self.dtype)), dim=-1)
        return self.logit_scale.exp() * image_features @ self.text_features().t()
