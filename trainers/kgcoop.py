"""KgCoOp (Yao et al., CVPR 2023) and KgCoOp+ATPrompt: CoOp whose class text features stay near CLIP's own.

The prompt is CoOp's (`TRAINER.COOP.*`, the ATPrompt blocks with `TRAINER.ATPROMPT.USE_ATPROMPT`); the loss adds
W (`TRAINER.COOP.W`) times 1 - the mean cosine similarity between each class's prompted text feature and its
feature from the hand-written template (datasets/catalog.py, the original's KgCoOp table), which keeps the learned
prompt near the knowledge CLIP already has, so that it generalises better to unseen classes.

The template features come from the same frozen CLIP, on the first training step, at the run's precision (the
original loaded a second CLIP and encoded them in fp16 whatever PREC said), and the same loss is used in every
precision (the original's amp step dropped the extra term and failed on the model's two outputs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dassl.engine import TRAINER_REGISTRY
from datasets import catalog
from trainers import anchoropt
from trainers.backbone import replay_clip_construction
from trainers.coop import CoOp
from trainers.layout import clean_classname
from trainers.prompting import FixedPrompts, Outputs, PromptedCLIP, PromptLearner


class KgCoOpCLIP(PromptedCLIP):
    """CoOp's CustomCLIP plus the hand-written class prompts whose features its text features are kept close to."""

    def __init__(self, clip_model, prompt_learner: PromptLearner, templates: list[str], weight: float) -> None:
        super().__init__(clip_model, prompt_learner)
        self.templates = FixedPrompts(clip_model, templates)
        self.weight = weight

    def forward_train(self, image: torch.Tensor) -> Outputs:
        features, text = self.image_features(image), self.text_features()
        return {"logits": self.class_logits(features, text), "image_features": features, "text": text}

    def loss(self, outputs: Outputs, label: torch.Tensor) -> torch.Tensor:
        """CE + W * (1 - mean cosine similarity to the template features)."""
        reference = self.templates.encode(self.text_encoder)
        similarity = F.cosine_similarity(outputs["text"].float(), reference, dim=1, eps=1e-7)
        return F.cross_entropy(outputs["logits"], label) + self.weight * (1.0 - similarity.mean())


@TRAINER_REGISTRY.register()
class KgCoOp(CoOp):
    """CoOp's `TRAINER.COOP.*` prompt and the knowledge-guided loss of weight `TRAINER.COOP.W`."""

    @classmethod
    def build_custom_clip(cls, cfg, clip_model, classnames, attributes):
        branch = anchoropt.anchor_prompts(cfg, clip_model, classnames)
        learner = cls.build_prompt_learner(cfg, clip_model, classnames, attributes)
        if cfg.TRAINER.ORIGINAL_DRAWS:
            replay_clip_construction(clip_model)  # the original loaded a second CLIP here for the template features
        template = catalog.template(cfg.DATASET.NAME, "KgCoOp")
        prompts = [template.format(clean_classname(name)) for name in classnames]
        return anchoropt.build_model(KgCoOpCLIP, cfg, branch, clip_model, learner, prompts,
                                     cfg.TRAINER.COOP.W)


# The original's name: like the original, it uses ATPrompt only with TRAINER.ATPROMPT.USE_ATPROMPT True.
TRAINER_REGISTRY.register(KgCoOp, name="KgCoOp_ATP")
