"""DePT (Zhang et al., CVPR 2024) on CoOp, with or without ATPrompt: decoupled prompt tuning.

Besides CoOp's prompt, DePT learns a channel-wise transform (FiLM) of the text and image features and a linear
head on the base classes. Training mixes CoOp's similarity loss with the head's loss on both transformed text and
image features; on the base classes the test fuses the similarity logits with the head's, while new classes (which
the head never saw) use the similarity logits alone.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from clip.model import CLIP
from dassl.data.datasets import DatasetBase
from dassl.engine import TRAINER_REGISTRY
from dassl.utils.errors import UserError
from datasets import catalog
from trainers.coop import CoOp
from trainers.coop import config as coop_config
from trainers.families import (
    ANCHOROPT_PROMPT,
    ANCHOROPT_PROMPT_OPTIONS,
    B2N,
    EVAL,
    SEED,
    anchoropt_base2new,
    atprompt_and_vanilla,
    benchmark_columns,
)
from trainers.method import TRAIN_AND_EVAL, Method
from trainers.prompting import Outputs, PromptedCLIP, PromptLearner

HEAD_TYPES = ("linear", "similarity")


class FiLM(nn.Module):
    """y = scale * x + bias per channel; fp32 parameters applied in the input's dtype."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale.to(x.dtype) * x + self.bias.to(x.dtype)


class DePTCLIP(PromptedCLIP):
    """CoOp's CustomCLIP plus FiLM (`film_lp_img`, `film_lp_text`) and the base-class head (`linear_probe_proj`).

    `base_mode` says whether the current classes are the ones the head is (or was) trained on; outside it the head
    is an Identity and the model gives plain similarity logits.
    """

    TEST_LOGITS_FROM_ENCODER = True  # the heads take the raw encoder output (`features_from_encoded`)

    def __init__(
        self,
        clip_model,
        prompt_learner: PromptLearner,
        base_mode: bool,
        head_type: str = "linear",
        film: bool = True,
        weight: float = 0.7,
        fusion: bool = True,
    ) -> None:
        super().__init__(clip_model, prompt_learner)
        if head_type not in HEAD_TYPES:
            raise UserError(f"TRAINER.DEPT.HEAD must be one of {', '.join(HEAD_TYPES)}, got '{head_type}'")
        self.head_type, self.weight, self.fusion = head_type, weight, fusion
        self.feature_dim = dim = clip_model.visual.output_dim
        self.film = film
        if film:
            self.film_lp_img = FiLM(dim)
            self.film_lp_text = FiLM(dim)
        self.set_base_mode(base_mode)

    def set_base_mode(self, base_mode: bool) -> None:
        """Give the model the head of its classes (base mode, a linear head) or none."""
        if getattr(self, "base_mode", None) == base_mode:
            return
        self.base_mode = base_mode
        if base_mode and self.head_type == "linear":
            self.linear_probe_proj = nn.Linear(self.feature_dim, self.prompt_learner.n_cls).to(self.dtype)
        else:
            self.linear_probe_proj = nn.Identity()

    def _encode_text(self) -> torch.Tensor:
        # DePT's heads take the raw text features, so the cache of PromptedCLIP.text_features() holds them here;
        # the similarity logits normalise them.
        return self.text_encoder(self.prompt_learner(), self.prompt_learner.eot)

    def features_from_encoded(self, encoded: torch.Tensor) -> torch.Tensor:
        """Raw (un-normalised) image features [B, E]: the heads take them as they are."""
        return encoded

    def anchor_image_features(self, image: torch.Tensor | None, image_features: torch.Tensor) -> torch.Tensor:
        return F.normalize(image_features, dim=-1)

    def similarity(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.logit_scale.exp() * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).t()

    def probe(self, text, image, labels=None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The head's logits and their labels: with labels (training) on the text features of the labels' classes
        and on the image features, labels twice; without, on the image features only."""
        if self.film:
            text, image = self.film_lp_text(text), self.film_lp_img(image)
        if self.head_type == "similarity":
            return self.similarity(text, image), labels
        if labels is None:
            return self.linear_probe_proj(image), None
        return self.linear_probe_proj(torch.cat([text[labels], image])), torch.cat([labels, labels])

    def forward_train(self, image: torch.Tensor) -> Outputs:
        text, features = self.text_features(), self.image_features(image)
        return {"logits": self.similarity(text, features), "text": text, "image_features": features}

    def loss(self, outputs: Outputs, label: torch.Tensor) -> torch.Tensor:
        """(1 - w) CE(similarity logits) + w CE(head logits)."""
        head_logits, head_labels = self.probe(outputs["text"], outputs["image_features"], label)
        return ((1 - self.weight) * F.cross_entropy(outputs["logits"], label)
                + self.weight * F.cross_entropy(head_logits, head_labels))

    def class_logits(self, image_features: torch.Tensor) -> torch.Tensor:
        """The test's logits of raw image features: the similarity logits, fused with the head's on the classes it
        knows (the head's alone without TEST_TIME_FUSION)."""
        text = self.text_features()
        logits = self.similarity(text, image_features)
        if not self.base_mode:
            return logits
        head_logits, _ = self.probe(text, image_features)
        if not self.fusion:
            return head_logits
        return (1 - self.weight) * logits + self.weight * head_logits


def is_base_mode(cfg: CN, trained: dict | None = None) -> bool:
    """Whether the classes are those the head learns: those it trains on (base or all classes); in an evaluation,
    those its checkpoint was trained on (`trained`: its settings), or the classes of ImageNet (or a variant) for a
    head trained on all of ImageNet; without a record (the original's checkpoints), base classes or ImageNet's."""
    subsample = cfg.DATASET.SUBSAMPLE_CLASSES
    if subsample == "new":
        return False
    info = catalog.by_name(cfg.DATASET.NAME)
    imagenet_head = subsample == "all" and info is not None and info.imagenet_classes
    if trained is None:
        return subsample == "base" or imagenet_head
    same = (trained.get("DATASET.NAME"), trained.get("DATASET.SUBSAMPLE_CLASSES")) == (cfg.DATASET.NAME, subsample)
    trained_info = catalog.by_name(trained.get("DATASET.NAME", ""))
    return same or (imagenet_head and trained_info is not None and trained_info.imagenet_classes
                    and trained.get("DATASET.SUBSAMPLE_CLASSES") == "all")


def config() -> CN:
    """TRAINER.DEPT: CoOp's prompt keys, then DePT's heads (the original read them as TRAINER.COOP.*,
    TRAINER.LINEAR_PROBE.*, TRAINER.FILM.LINEAR_PROBE and TRAINER.NAMES_TO_UPDATE, which still work)."""
    node = coop_config()
    node.HEAD = "linear"  # the base-class head: linear (a classifier) or similarity (cosine logits)
    node.WEIGHT = 0.7  # w: the loss is (1 - w) CE(similarity) + w CE(head), and so is the fused test
    node.TEST_TIME_FUSION = True  # on base classes the test fuses both logits (False: the head's alone)
    node.FILM = True  # the channel-wise transforms of the text and image features before the head
    node.NAMES_TO_UPDATE = ["prompt_learner", "linear_probe", "film"]  # parameters that learn, by name
    return node


OPTIONS = "TRAINER.DEPT.N_CTX {NCTX} TRAINER.DEPT.WEIGHT {WEIGHT}"
FAMILIES = (
    # The original's docs/ATPrompt.md table (10 epochs, 4 tokens, w 0.7, with the differences below) and DePT's scripts.
    *atprompt_and_vanilla("base2new", "DePT", "DePT", "vit_b16_ep10_bs4_lr35", B2N + "/CTX_{NCTX}_epo_{EPO}" + SEED,
                          EVAL + "/CTX_{NCTX}_epo_{EPO}/{DATASET}" + SEED, OPTIONS,
                          atprompt={"EPO": 10, "NCTX": 4, "WEIGHT": 0.7}, vanilla={"EPO": 20, "NCTX": 4, "WEIGHT": 0.7},
                          atprompt_per_dataset={"imagenet": {"NCTX": 2}, "caltech101": {"WEIGHT": 0.6},
                                                "oxford_pets": {"NCTX": 2}, "stanford_cars": {"NCTX": 2, "WEIGHT": 0.6},
                                                "dtd": {"WEIGHT": 0.6}, "ucf101": {"WEIGHT": 0.5}},
                          vanilla_cfg="vit_b16_ep20_bs4_lr35"),
    # AnchorOPT's stage II (the original's docs/AnchorOPT.md table): no distillation, so its folders name the
    # head's weight instead.
    anchoropt_base2new("DePT", "DePT", "vit_b16_ep10_bs4_lr35",
                       {"EPO": 10, "NCTX": 8, "ANCHOR_LEN": 1, "PROMPT_CE_WEIGHT": 10.0, "WEIGHT": 0.5},
                       benchmark_columns({
                           "NCTX": (4, 4, 4, 8, 8, 4, 4, 8, 8, 8, 8),
                           "EPO": (10, 10, 10, 20, 10, 10, 20, 10, 10, 20, 10),
                           "PROMPT_CE_WEIGHT": (10.0,) * 11,
                           "WEIGHT": (0.5, 0.5, 0.5, 0.6, 0.9, 0.5, 0.6, 0.6, 0.8, 0.9, 0.8),
                       }),
                       run=ANCHOROPT_PROMPT + "_W_{WEIGHT}",
                       options=(ANCHOROPT_PROMPT_OPTIONS
                                + " TRAINER.ANCHOROPT.KD_WEIGHT 0.0 TRAINER.DEPT.WEIGHT {WEIGHT}")),
)


@TRAINER_REGISTRY.register()
class DePT(CoOp):
    """CoOp's prompt plus the base-class head (`TRAINER.DEPT.*`); whole-model checkpoints."""

    METHOD = Method(
        "DePT", "dept", "DEPT", order=40, config=config, families=FAMILIES,
        benchmark=TRAIN_AND_EVAL,
        anchoropt_distills=False,
        paper={"DePT": (83.80, 72.89, 77.97), "DePT_ATP": (83.80, 73.75, 78.45),
               "DePT_AnchorOPT": (84.27, 76.90, 80.42)},
        summary="CoOp's prompt plus a linear head on channel-wise transformed features",
    )
    MODEL = DePTCLIP
    SAVE_NAME = "PromptLearner"
    SAVE_WHOLE_MODEL = True

    @classmethod
    def model_options(cls, cfg: CN, clip_model: CLIP, classnames: list[str]) -> dict:
        opts = cls.options(cfg)
        # Built for training on its classes; an evaluation decides again from the checkpoint (adapt_state_dict).
        base_mode = cfg.DATASET.SUBSAMPLE_CLASSES in ("base", "all")
        return {"base_mode": base_mode, "head_type": opts.HEAD, "film": opts.FILM, "weight": opts.WEIGHT,
                "fusion": opts.TEST_TIME_FUSION}

    @classmethod
    def is_trainable(cls, cfg, name: str) -> bool:
        return any(part in name for part in cls.options(cfg).NAMES_TO_UPDATE)

    def before_train(self) -> None:
        if self.cfg.DATASET.SUBSAMPLE_CLASSES == "new":
            raise UserError("DePT trains its linear head on base classes (or all classes, in the few-shot protocol), "
                            "but DATASET.SUBSAMPLE_CLASSES is 'new': set DATASET.SUBSAMPLE_CLASSES base (or all)")
        super().before_train()

    @classmethod
    def adapt_state_dict(cls, cfg: CN, model: DePTCLIP, state: dict, meta: dict,
                         dataset: DatasetBase | None = None) -> dict:
        """The head is for the classes it was trained on: evaluated on others (new classes, another dataset) it is
        not used; an ImageNet head evaluated on a variant with fewer classes (ImageNet-A/R: 200) keeps their rows."""
        model.set_base_mode(is_base_mode(cfg, meta.get("settings")))
        if not model.base_mode:
            return {k: v for k, v in state.items() if not k.startswith("linear_probe_proj.")}
        indices = getattr(dataset, "imagenet_indices", None)
        weight = state.get("linear_probe_proj.weight")
        if indices is None or weight is None or weight.shape[0] <= max(indices):
            return state  # not an ImageNet head, or already one row per class
        if list(indices) == list(range(weight.shape[0])):
            return state
        print(f"Keeping the {len(indices)} of {weight.shape[0]} head rows that {cfg.DATASET.NAME} uses")
        rows = torch.tensor(indices, dtype=torch.long)
        state = dict(state)
        for key in ("linear_probe_proj.weight", "linear_probe_proj.bias"):
            if key in state:
                state[key] = state[key][rows]
        return state
