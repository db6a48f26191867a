"""Deep prompts in both CLIP towers, shared by MaPLe and IVLP (PromptSRC).

Before each text layer i in 1..text_depth-1 the class context's hidden states are replaced by a deep text prompt;
the vision tower carries prompt tokens after its class and patch tokens (no positional embedding), replaced before
each vision layer i in 1..vision_depth-1. Attribute blocks and words flow through the text layers untouched. A
method says what the prompts are (`deep_text_prompt`, `vision_tokens`: MaPLe couples them to the text, IVLP learns
them independently); where they sit in either tower is `trainers.layout.TokenSlots`' business. `DeepPromptTrainer`
holds what their trainers share.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from clip.model import CLIP, InputHook, LayerHook
from trainers.base import PromptTrainer
from trainers.layout import TokenSlots, arranged_context
from trainers.prompting import PromptedCLIP, PromptLearner


class DeepPromptLearner(PromptLearner):
    """`PromptLearner` whose prompts also enter the deeper layers of both towers.

    `text_depth` counts the input layer (1: the prompt alone); `vision_depth` 0 means no vision prompts, else the
    `n_vision` tokens appended to the vision tower's input and replaced before its layers 1..vision_depth-1.
    `prompt`: the text prompt's layout and plug-ins as `PromptLearner` takes them (attributes, ctx_init,
    single_token_words, unused_blocks, anchoring).
    """

    def __init__(self, clip_model: CLIP, classnames: Sequence[str], n_ctx: int, text_depth: int, vision_depth: int,
                 n_vision: int, original_deep_anchor: bool = False, **prompt: Any) -> None:
        # Plain values may be set before Module.__init__; init_method_parts reads them.
        self.text_depth, self.vision_depth, self.n_vision = text_depth, vision_depth, n_vision
        super().__init__(clip_model, classnames, n_ctx, **prompt)
        self.text_slots = TokenSlots.of_block(self.layout, "ctx")
        if vision_depth:
            self.vision_slots = TokenSlots.after_patches(clip_model.visual.positional_embedding.shape[0], n_vision)
        if self.anchoring:  # where deep layers read the anchor's hidden state (MaPLe's original: one position early)
            self.anchor_slots = TokenSlots(self.layout.block_positions("ctx") - int(original_deep_anchor))

    def deep_text_prompt(self, i: int) -> torch.Tensor:
        """The deep prompt [n_ctx, text width] that replaces the class context before text layer i."""
        raise NotImplementedError

    def vision_tokens(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The vision tower's input prompt tokens [n_vision, width] and its deep ones for layers 1..vision_depth-1."""
        raise NotImplementedError

    def text_hook(self, i: int, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Before text layer i in 1..text_depth-1, the class context's hidden states become the deep prompt. x:
        [L, N, D].

        With AnchorOPT the class-context slots become P @ [deep prompt; the anchor's hidden state], the anchor's
        state read where P put the anchor (its first slot), as MaPLe's original deep layers did; an anchor token no
        slot holds is left out of the product. `positions` is the arrangement P of this forward."""
        if not 1 <= i < self.text_depth:
            return x
        deep = self.deep_text_prompt(i)
        if not self.anchoring:
            return self.text_slots.write(x, deep)
        holders = positions[:, self.n_ctx :].argmax(dim=0)  # [L]: the first slot holding each anchor token
        # Left out as the original did, so that its column of P gets no gradient from a state no slot shows.
        held = positions[:, self.n_ctx :].sum(dim=0) > 0
        positions = torch.cat([positions[:, : self.n_ctx], positions[:, self.n_ctx :] * held], dim=1)
        anchor_states = self.anchor_slots.read(x)[holders].transpose(0, 1)  # [N, L, D]
        slots = arranged_context(deep.to(x.dtype).expand(x.shape[1], -1, -1), anchor_states, positions)
        return self.text_slots.write(x, slots.transpose(0, 1))

    def vision_prompts(self) -> tuple[InputHook, LayerHook] | None:
        """The hooks that append the vision prompt tokens and then put in the deep ones; None without them."""
        if not self.vision_depth:
            return None
        shallow, deep = self.vision_tokens()

        def insert(x: torch.Tensor) -> torch.Tensor:
            return self.vision_slots.insert(x, shallow)

        def hook(i: int, x: torch.Tensor) -> torch.Tensor:
            return self.vision_slots.write(x, deep[i - 1]) if 1 <= i < self.vision_depth else x

        return insert, hook


class DeepPromptedCLIP(PromptedCLIP):
    """CLIP with deep prompts in both towers. The text features depend only on the prompt learner, so they are
    cached during evaluation (`PromptedCLIP.text_features`)."""

    @property
    def TEST_LOGITS_FROM_ENCODER(self) -> bool:  # noqa: N802 (PromptedCLIP's declaration)
        """Only without vision prompts do the test logits come from the frozen image encoder alone."""
        return not self.prompt_learner.vision_depth

    def _encode_text(self) -> torch.Tensor:
        learner = self.prompt_learner
        positions = learner.positions()  # AnchorOPT: one arrangement for the prompts and their deep layers
        hook = functools.partial(learner.text_hook, positions=positions)
        return F.normalize(self.text_encoder(learner(positions=positions), learner.eot, layer_hook=hook), dim=-1)

    def image_features(self, image: torch.Tensor) -> torch.Tensor:
        hooks = self.prompt_learner.vision_prompts()
        if hooks is None:
            return super().image_features(image)
        insert, hook = hooks
        return F.normalize(self.image_encoder(image.type(self.dtype), input_hook=insert, layer_hook=hook), dim=-1)

    def anchor_image_features(self, image: torch.Tensor | None, image_features: torch.Tensor) -> torch.Tensor:
        """AnchorOPT's anchor branch scores the unprompted image features: the same encoder without the prompts
        (MaPLe's original kept a second CLIP for them)."""
        if not self.prompt_learner.vision_depth:
            return image_features
        return F.normalize(self.image_encoder(image.type(self.dtype)), dim=-1)


class DeepPromptTrainer(PromptTrainer):
    """What the trainers of deep prompts (MaPLe, IVLP) share with their originals: CTX_INIT initialises a context of
    at most 4 tokens (the words of "a photo of a"), and a checkpoint holds the whole model."""

    CTX_INIT_MAX_LENGTH = 4
    SAVE_WHOLE_MODEL = True
