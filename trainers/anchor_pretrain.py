"""AnchorOPT's stage I: learn the anchor of `"<anchor> of <class name>."` from LLM descriptions of the classes.

The anchor prompt's normalised text feature of each class is pulled towards the normalised text features of the
class's first MAX_TEMPLATE_LENGTH descriptions (a frozen CLIP's, computed once): ANCHOR_MSE_WEIGHT x the mean
squared difference over classes, descriptions and channels (the original's nn.MSELoss). A class with fewer
descriptions averages over the ones it has, so every class weighs the same, as all do in the original's files.

No image enters the loss, so an epoch is the text side alone: as many optimiser steps as the epoch has training
batches (SGD on the anchor, OPTIM.*, the schedule stepped once per epoch, as the original), without loading or
encoding a single image; `use_plain_computation()` runs the image encoder on every batch as the original did, with
the same loss and gradients. The test is the anchor prompt as a classifier (the released logs' anchor accuracy).
The run writes `anchor.pth` (trainers/anchor_files.py), what stage II reads.
"""

from __future__ import annotations

import os

import torch
from yacs.config import CfgNode

from clip.model import CLIP
from dassl.engine import TRAINER_REGISTRY
from dassl.engine.resume import capture_rng_state
from trainers import anchor_files
from trainers.anchoropt import AnchorPromptLearner
from trainers.base import PromptTrainer, training_step
from trainers.method import BenchmarkCase, Method
from trainers.original import replay_clip_construction
from trainers.prompting import FixedPrompts, Outputs, PromptedCLIP


class Descriptions(FixedPrompts):
    """The description features of every class, all classes' sentences in a row ([N, E], `encode`), with the class
    of each (`owner` [N]) and how many each class has (`counts` [n_cls])."""

    def __init__(self, clip_model, descriptions: list[list[str]]) -> None:
        super().__init__(clip_model, [sentence for sentences in descriptions for sentence in sentences])
        counts = torch.tensor([len(sentences) for sentences in descriptions])
        self.register_buffer("counts", counts, persistent=False)
        self.register_buffer("owner", torch.repeat_interleave(torch.arange(len(counts)), counts), persistent=False)


class AnchorPretrainCLIP(PromptedCLIP):
    """The anchor prompt as a classifier, and the loss pulling its text features towards the descriptions'."""

    def __init__(self, clip_model, prompt_learner: AnchorPromptLearner, weight: float) -> None:
        super().__init__(clip_model, prompt_learner)
        self.weight = weight
        self.descriptions: Descriptions | None = None  # set before training (an evaluation needs none)
        self.image_pass = False

    def use_plain_computation(self, plain: bool = True) -> AnchorPretrainCLIP:
        self.image_pass = plain
        return super().use_plain_computation(plain)

    def forward_train(self, image: torch.Tensor | None) -> Outputs:
        if self.image_pass and image is not None:
            with torch.no_grad():
                self.image_features(image)  # the original's wasted image pass
        return {"text": self.text_features()}

    def loss(self, outputs: Outputs, label: torch.Tensor | None = None) -> torch.Tensor:
        described = self.descriptions
        targets = described.encode(self.text_encoder)
        squared = (outputs["text"].float()[described.owner] - targets).pow(2).mean(dim=-1)  # [N]
        per_class = squared.new_zeros(len(described.counts)).index_add(0, described.owner, squared) / described.counts
        return self.weight * per_class.mean()


def made_up_descriptions(model: AnchorPretrainCLIP, clip_model: CLIP, classnames: list[str], seed: int) -> None:
    """What stage I reads from a description file, for the benchmark: ten sentences per class."""
    sentences = [[f"a photo of a {name}, view {i}." for i in range(10)] for name in classnames]
    model.descriptions = Descriptions(clip_model, sentences).to(model.logit_scale.device)


@TRAINER_REGISTRY.register()
class AnchorPretrain(PromptTrainer):
    """Stage I of AnchorOPT; `TRAINER.ANCHOROPT.*` (ANCHOR_LEN, ANCHOR_MSE_WEIGHT, MAX_TEMPLATE_LENGTH,
    DESCRIPTIONS), precision from TRAINER.COOP.PREC as the original (CoOp_Pretrain_Anchor)."""

    # AnchorOPT's first stage, not a method its switch applies to; its scripts are CoOp's (the coop/anchoropt_anchor
    # family). Its benchmark: the text-only step against the original's, which encoded the batch's images.
    METHOD = Method(
        "AnchorPretrain", "coop", "COOP", order=5, plugins=False,
        benchmark=(BenchmarkCase("train", {0: 1.5}, name="anchor-pretrain", prepare=made_up_descriptions,
                                 note="anchor-pretrain: AnchorOPT's stage I without images against the original's "
                                      "step, which encoded the batch's images and discarded them (the data loading "
                                      "it also saves is not counted)"),),
        summary="AnchorOPT's stage I: the anchor prompt learned from class descriptions",
    )
    SAVE_NAME = anchor_files.STAGE_ONE_FOLDER

    @classmethod
    def save_name(cls, cfg) -> str:
        return cls.SAVE_NAME

    @classmethod
    def check_settings(cls, cfg: CfgNode, kind: str | None = None) -> None:
        super().check_settings(cfg, kind)
        if kind == "train":  # the descriptions it learns from, before the data and CLIP load
            anchor_files.check_descriptions(cfg)

    @classmethod
    def input_files(cls, cfg, kind: str) -> list[str]:
        path = anchor_files.descriptions_path(cfg)
        return [path] if kind == "train" and os.path.isfile(path) else []

    @classmethod
    def build_custom_clip(cls, cfg, clip_model, classnames, attributes):
        opts = cfg.TRAINER.ANCHOROPT
        learner = AnchorPromptLearner(clip_model, classnames, opts.ANCHOR_LEN)
        if cfg.TRAINER.ORIGINAL_DRAWS:
            replay_clip_construction(clip_model)  # the original built a second CLIP to encode the descriptions
        return AnchorPretrainCLIP(clip_model, learner, opts.ANCHOR_MSE_WEIGHT)

    def before_train(self) -> None:
        path = anchor_files.descriptions_path(self.cfg)
        opts = self.cfg.TRAINER.ANCHOROPT
        descriptions = anchor_files.read_descriptions(path, self.dm.dataset.classnames, opts.MAX_TEMPLATE_LENGTH)
        counts = [len(d) for d in descriptions]
        print(f"AnchorOPT stage I: {sum(counts)} descriptions of {len(counts)} classes from {path} "
              f"({min(counts)}-{max(counts)} per class)")
        self.model.descriptions = Descriptions(self.clip_model, descriptions).to(self.device)
        super().before_train()

    def _epoch_batches(self):
        """Without the image pass an epoch needs no data: as many steps as it has batches, and no batch."""
        if self.model.image_pass:
            return super()._epoch_batches()
        partial, self._partial_epoch = self._partial_epoch, None
        self._epoch_rng = capture_rng_state()
        first = partial["batches_done"] if partial else 0
        return iter([None] * (self.num_batches - first)), first

    def forward_backward(self, batch: dict | None) -> dict:
        image = None if batch is None else batch["img"].to(self.device)
        loss, _ = training_step(self.model, image, None, self.prec, self.device)
        self.backward_and_update(loss)
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return {"loss": loss.item()}

    def after_train(self) -> None:
        about = {"backbone": self.backbone, "word": "of", "dataset": self.cfg.DATASET.NAME,
                 "classes": list(self.dm.dataset.classnames), "epoch": self.max_epoch,
                 "settings": self.run_settings()}
        path = os.path.join(self.output_dir, anchor_files.ANCHOR_FILE)
        anchor_files.write_anchor(path, self.model.prompt_learner.anchor_ctx_1, about)
        print(f"AnchorOPT stage I: the anchor is in {path}")
        super().after_train()

    def describe(self) -> dict:
        return {"method": "AnchorPretrain", "backbone": self.backbone,
                "prompt": {"anchor_len": self.model.prompt_learner.anchor_len}}

