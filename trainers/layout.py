"""The attribute-anchored prompt layout: where every token of every class's prompt goes.

- `PromptLayout`: token ids of `[SOS][A1][w1][A2][w2]...[ctx][class name].[EOS]` per class (K = 0 attributes is
  vanilla CoOp) and the position of every soft token in them.
- `TokenSlots`: where a block of deep prompts sits in a transformer's token sequence, for the text tower (a soft
  block of the layout) and for the vision tower (prompt tokens after the patches); the one place that knows it.
- AnchorOPT's two layouts: the anchor prompt `[SOS][anchor] of <class name>.[EOS]` (`anchor_layout`), and the
  class context whose slots hold the learnable context and the anchor in a learned order (`Anchoring`,
  `arrangement`, `arranged_context`).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from clip.simple_tokenizer import SimpleTokenizer
from dassl.utils.errors import UserError

CONTEXT_LENGTH = 77
PLACEHOLDER = "X"  # the word the original templates put where soft tokens go


@functools.lru_cache(maxsize=1)
def tokenizer() -> SimpleTokenizer:
    return SimpleTokenizer()


def clean_classname(name: str) -> str:
    return name.replace("_", " ")


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
        if n_ctx is not None and n_ctx < 0:
            raise UserError(f"N_CTX is {n_ctx}: the number of context tokens must be 0 or more")
        if class_position not in ("end", "middle", "front"):
            raise UserError(f"CLASS_TOKEN_POSITION must be end, middle or front, got '{class_position}'")
        tok = tokenizer()
        sot, eot = tok.encoder["<|startoftext|>"], tok.encoder["<|endoftext|>"]
        x = tok.encode(PLACEHOLDER)[0]
        ctx_ids = tok.encode(ctx_init) if ctx_init else [x] * (n_ctx or 0)
        n_ctx = len(ctx_ids) if n_ctx is None else n_ctx
        if len(ctx_ids) < n_ctx:
            raise UserError(f"CTX_INIT '{ctx_init}' has {len(ctx_ids)} tokens, fewer than N_CTX = {n_ctx}")
        self.attributes = [(str(w), int(n)) for w, n in attributes]
        self.n_ctx = n_ctx
        self.blocks = [(f"ctx_att{k + 1}", n) for k, (_, n) in enumerate(self.attributes)] + [("ctx", n_ctx)]

        # The class-independent head: SOS, then each attribute's soft block and word.
        head, head_soft = [sot], []
        for word, n in self.attributes:
            word_ids = tok.encode(word)
            if not word_ids:
                raise UserError(f"attribute word '{word}' is empty after tokenisation")
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
            raise UserError("a CTX_INIT longer than N_CTX only works with CLASS_TOKEN_POSITION 'end'")
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
                raise UserError(
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


class TokenSlots(nn.Module):
    """The positions [rows, n] of a block of n prompt tokens in each row of a sequence-first batch [L, N, D].

    `rows` is 1 when the block sits at the same place in every row (the vision tower's prompts); otherwise row r of
    the batch is the prompt of class r % rows (the text tower sees the classes' prompts, possibly repeated). A
    module, so that the positions move with the model that owns them.
    """

    def __init__(self, positions: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("positions", positions.reshape(-1, positions.shape[-1]).long(), persistent=False)

    @property
    def n(self) -> int:
        return self.positions.shape[1]

    def _index(self, x: torch.Tensor) -> torch.Tensor:
        """Index [n, N, D] into x's first dimension for every (slot, row, channel)."""
        rows = self.positions.t()  # [n, rows]
        rows = rows.repeat(1, x.shape[1] // rows.shape[1]) if rows.shape[1] > 1 else rows.expand(-1, x.shape[1])
        return rows.unsqueeze(-1).expand(-1, -1, x.shape[2])

    def read(self, x: torch.Tensor) -> torch.Tensor:
        """The hidden states at the slots, [n, N, D]."""
        return x.gather(0, self._index(x))

    def write(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """x with the slots replaced by `tokens` ([n, D] for every row, or [n, N, D])."""
        tokens = tokens.to(x.dtype)
        if tokens.dim() == 2:
            tokens = tokens.unsqueeze(1).expand(-1, x.shape[1], -1)
        return x.scatter(0, self._index(x), tokens)

    @classmethod
    def of_block(cls, layout: PromptLayout, block: str) -> TokenSlots:
        """The text tower's slots of one soft block of `layout` (e.g. "ctx"), per class."""
        return cls(layout.block_positions(block))

    @classmethod
    def after_patches(cls, n_image_tokens: int, n: int) -> TokenSlots:
        """The vision tower's slots of n prompt tokens after its `n_image_tokens` (the class and patch tokens)."""
        return cls(torch.arange(n_image_tokens, n_image_tokens + n).unsqueeze(0))

    def insert(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Batch-first tokens [N, L, D] with `tokens` ([n, D] or [N, n, D]) inserted at these (shared) slots."""
        start = int(self.positions[0, 0])
        if tokens.dim() == 2:
            tokens = tokens.expand(x.shape[0], -1, -1)
        return torch.cat([x[:, :start], tokens.to(x.dtype), x[:, start:]], dim=1)


# --------------------------------------------------------------------------------------------------------------
# AnchorOPT
# --------------------------------------------------------------------------------------------------------------
ANCHOR_WORD = "of"  # the anchor prompt is "<anchor> of <class name>."


def anchor_layout(classnames: Sequence[str], anchor_len: int) -> PromptLayout:
    """The anchor prompt `[SOS][anchor] of <class name>.[EOS]`: the anchor is a soft block before a fixed word, as an
    attribute block is, and no context."""
    return PromptLayout(classnames, 0, [(ANCHOR_WORD, anchor_len)])


@dataclass(frozen=True)
class Anchoring:
    """How AnchorOPT lays out a class context: its `length` anchor tokens join the learnable context, and slot i of
    the n_ctx + length slots takes the token that row i of the arrangement P picks (`arranged_context`).

    P is a hard Gumbel-softmax sample of the position logits in training (`gumbel_temp`); at test time it is the
    arrangement the logits choose (their row-wise argmax), or, with `eval_gumbel`, a fresh sample per batch as in the
    original. `original_eot` pools the text feature `length` tokens before EOT, where the original read it.
    """

    length: int
    gumbel_temp: float = 1.0
    eval_gumbel: bool = False
    original_eot: bool = False


def arrangement(position_logits: torch.Tensor, tau: float, sample: bool) -> torch.Tensor:
    """P [k, k] with one-hot rows: a straight-through hard Gumbel-softmax sample, or the row-wise argmax. Rows are
    independent, so a token may fill two slots and another none, as in the original."""
    if sample:
        return F.gumbel_softmax(position_logits, tau=tau, hard=True)
    return F.one_hot(position_logits.argmax(dim=-1), position_logits.shape[-1]).to(position_logits.dtype)


def arranged_context(ctx: torch.Tensor, anchor: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """P @ [ctx; anchor]: the class context slots [..., n_ctx + L, D] from the context [..., n_ctx, D] (shared,
    class-specific or per image) and the anchor [L, D] (or [..., L, D]: MaPLe's deep layers, per sequence)."""
    anchor = anchor.to(ctx.dtype).expand(*ctx.shape[:-2], *anchor.shape[-2:])
    return positions.to(ctx.dtype) @ torch.cat([ctx, anchor], dim=-2)


def describe_arrangement(positions: torch.Tensor, n_ctx: int) -> list[str]:
    """The token in each slot, e.g. ["ctx1", "anchor1", "ctx2", "ctx3", "ctx4"]."""
    return [f"ctx{j + 1}" if j < n_ctx else f"anchor{j - n_ctx + 1}" for j in positions.argmax(dim=-1).tolist()]
