"""Zero-shot CLIP with the hand-written template of each dataset (datasets/catalog.py): the baseline every prompt
learner is compared to."""

import torch
import torch.nn as nn
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from dassl.engine import TRAINER_REGISTRY, TrainerX
from dassl.engine.feature_cache import CachedEvaluation
from dassl.engine.precision import autocast, resolve_precision
from datasets import catalog
from trainers.backbone import backbone_identity, load_clip_at
from trainers.families import Family
from trainers.layout import clean_classname
from trainers.method import Method
from trainers.prompting import FixedPrompts, TextEncoder


def config() -> CN:
    """TRAINER.ZSCLIP."""
    node = CN()
    node.PREC = "fp16"  # fp16, fp32, amp or bf16
    return node


# scripts/zsclip/zeroshot.sh DATASET [DATA_ROOT] [SUBSAMPLE ...]: one evaluation per class split (base and new).
ZEROSHOT = Family("", "zeroshot", "ZeroshotCLIP", "CoOp", "vit_b16", "",
                  "evaluation/ZeroshotCLIP/{CFG}_{SUBSAMPLE}/{DATASET}/seed1", "", scripts={"zeroshot": "eval"},
                  summary="zero-shot CLIP with the dataset's hand-written template")


@TRAINER_REGISTRY.register()
class ZeroshotCLIP(CachedEvaluation, TrainerX):
    """Classifies with the text features of "<template>.format(class name)", computed once."""

    METHOD = Method("ZeroshotCLIP", "zsclip", "ZSCLIP", order=0, config=config, families=(ZEROSHOT,), plugins=False,
                    summary="CLIP with the dataset's hand-written template")

    def build_model(self) -> None:
        cfg = self.cfg
        self.prec = resolve_precision(cfg.TRAINER.ZSCLIP.PREC, self.device)
        self.clip_model = clip_model = load_clip_at(cfg, self.prec).to(self.device)
        self.backbone = backbone_identity(cfg)
        template = catalog.template(cfg.DATASET.NAME)
        prompts = [template.format(clean_classname(c)) for c in self.dm.dataset.classnames]
        print(f"Prompt example: {prompts[0]}")
        with autocast(self.prec, self.device):
            self.text_features = FixedPrompts(clip_model, prompts).to(self.device).encode(TextEncoder(clip_model))

    def describe(self) -> dict:
        """For the run record: the backbone (nothing is learned)."""
        return {"backbone": self.backbone}

    def model_inference(self, image: torch.Tensor) -> torch.Tensor:
        return self.logits_from_encoded(self.encode_images(image))

    # The two steps of model_inference, for evaluation from cached image features (dassl/engine/feature_cache.py).
    def frozen_image_encoder(self) -> nn.Module:
        return self.clip_model.visual

    def encode_images(self, image: torch.Tensor) -> torch.Tensor:
        with autocast(self.prec, self.device):
            return self.clip_model.encode_image(image.type(self.clip_model.dtype))

    def logits_from_encoded(self, encoded: torch.Tensor) -> torch.Tensor:
        image_features = F.normalize(encoded.float(), dim=-1)
        return self.clip_model.logit_scale.exp().float() * image_features @ self.text_features.t()
