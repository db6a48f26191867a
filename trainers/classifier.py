"""Classify images with a trained prompt: a classifier rebuilt from a run folder alone, for any class names.

A prompt learner's class text features depend on nothing but the class names (the fixed token embeddings are built
for whatever names a model is given), so the model of a run is rebuilt without its dataset: the method, backbone,
attributes, anchor, precision and preprocessing come from what the run recorded in its checkpoint
(trainers/trained.py), and the weights load as an evaluation loads them (`PromptTrainer.load_weights`). On the
classes the run was trained on, a model tests as its evaluation does on them (DePT with its head, AnchorOPT with its
normal branch); on any other class names, as its evaluation on new classes does (DePT's similarity logits, the
average of AnchorOPT's two branches).

    classifier = load_classifier("output/caltech101/CoOp_ATP/.../seed1", ["beaver", "platypus"])
    probabilities = classifier.predict(["a.jpg", "b.jpg"])   # [2, 2]; rows sum to 1
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch
from PIL import Image
from yacs.config import CfgNode

from dassl.data.transforms import build_transform
from dassl.engine import TRAINER_REGISTRY
from dassl.engine.precision import autocast, resolve_precision
from dassl.utils import read_image
from dassl.utils.errors import UserError
from trainers.backbone import backbone_identity, load_clip_at
from trainers.base import PromptTrainer
from trainers.config import cfg_of_settings
from trainers.layout import clean_classname
from trainers.prompting import PromptedCLIP
from trainers.trained import TrainedModel, find_model


class Classifier:
    """A trained prompt's model on `classnames`, with the test-time preprocessing of its run."""

    def __init__(self, model: PromptedCLIP, classnames: list[str], transform: Callable[[Image.Image], torch.Tensor],
                 device: torch.device, prec: str,
                 batch_size: int = 32) -> None:
        self.model, self.classnames, self.transform = model, classnames, transform
        self.device, self.prec, self.batch_size = device, prec, batch_size

    @torch.no_grad()
    def logits(self, images: Sequence[str | Image.Image]) -> torch.Tensor:
        """The model's logits [N, n_cls] of images (paths or PIL images), `batch_size` at a time, computed as its
        evaluation computes them."""
        rows = []
        for start in range(0, len(images), self.batch_size):
            batch = torch.stack([self.transform(read_image(image) if isinstance(image, (str, os.PathLike))
                                                else image.convert("RGB"))
                                 for image in images[start : start + self.batch_size]]).to(self.device)
            with autocast(self.prec, self.device):
                rows.append(self.model(batch).float().cpu())
        return torch.cat(rows) if rows else torch.empty(0, len(self.classnames))

    def predict(self, images: Sequence[str | Image.Image]) -> torch.Tensor:
        """Class probabilities [N, n_cls] (the softmax of the logits), in the order of `classnames`."""
        return self.logits(images).softmax(dim=-1)

    def top(self, images: Sequence[str | Image.Image], k: int = 5) -> list[list[tuple[str, float]]]:
        """The `k` likeliest classes of each image with their probabilities, likeliest first."""
        probabilities, indices = self.predict(images).topk(min(k, len(self.classnames)), dim=-1)
        return [[(self.classnames[i], p) for i, p in zip(row.tolist(), probs.tolist())]
                for row, probs in zip(indices, probabilities)]


def load_classifier(run_dir: str, classnames: Sequence[str] | None = None, device: str | torch.device | None = None,
                    epoch: int | None = None, batch_size: int = 32) -> Classifier:
    """The classifier of the training run in `run_dir` (its output folder) on `classnames` (default: the classes it
    was trained on), from the checkpoint of `epoch` (default: the best, else the latest). `device` defaults to a GPU
    when there is one. Needs no dataset; a run it cannot rebuild is one `UserError`."""
    found = find_model(run_dir, epoch)
    if found is None:
        raise UserError(f"{run_dir} holds no checkpoint: pass the output folder of a training run (it holds "
                        "<model>/model.pth.tar-N)")
    trainer, cfg = _trainer_and_config(found)
    names = _class_names(found, classnames)
    device = _device(device)
    prec = resolve_precision(trainer.options(cfg).PREC, device)
    clip_model = load_clip_at(cfg, prec)
    attributes = found.attributes() or []
    cfg = _for_classes(cfg, _same_classes(names, found.classnames))
    with torch.random.fork_rng(devices=[]):  # the model's initial values are replaced: draw them aside
        model = trainer.build_custom_clip(cfg, clip_model, names, attributes)
    trainer.set_trainable(cfg, model)  # what the checkpoint must hold
    trainer.load_weights(cfg, model, found.checkpoint, found.path, backbone_identity(cfg))
    model.requires_grad_(False)
    return Classifier(model.to(device).eval(), names, build_transform(cfg, is_train=False), device, prec, batch_size)


def _trainer_and_config(found: TrainedModel) -> tuple[type[PromptTrainer], CfgNode]:
    """The method and the config of the run that made the checkpoint."""
    training = found.training()
    if training is None:
        raise UserError(f"{found.path} records no settings (a checkpoint of the original code, or of an older "
                        "version): evaluate it with train.py --eval-only and the settings it was trained with")
    cfg = cfg_of_settings(training.settings)
    name = cfg.TRAINER.NAME
    trainer = TRAINER_REGISTRY.get(name) if name in TRAINER_REGISTRY else None
    if trainer is None or not issubclass(trainer, PromptTrainer):
        raise UserError(f"{found.path} was trained by {name or 'an unnamed trainer'}, which is not a prompt learner "
                        "of this version: it cannot be rebuilt as a classifier")
    if trainer.RECORD_KIND != "train":
        raise UserError(f"{found.path} is of a {trainer.__name__} run, which chooses settings and classifies "
                        "nothing: classify with a run trained with what it found")
    return trainer, cfg


def _class_names(found: TrainedModel, given: Sequence[str] | None) -> list[str]:
    if given is not None:
        names = [str(name).strip() for name in given]
        if not names or not all(names):
            raise UserError("the class names are empty, or one of them is: give one name per class")
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise UserError(f"the class names repeat {', '.join(repeated)}: give each class once")
        return names
    if found.classnames is None:
        raise UserError(f"{found.path} does not name the classes it was trained on (a checkpoint of an older "
                        "version): give the class names (--classnames or --classnames-file)")
    return list(found.classnames)


def _same_classes(names: list[str], trained: list[str] | None) -> bool:
    """Whether `names` are the classes the run was trained on, in its order, as its prompts spell them."""
    return trained is not None and [clean_classname(n) for n in names] == [clean_classname(n) for n in trained]


def _device(name: str | torch.device | None) -> torch.device:
    try:
        device = torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError as err:
        raise UserError(f"device {name!r} is not a device torch knows ({err}): use e.g. cpu or cuda") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r}: this machine has no GPU torch can use; use cpu")
    return device


def _for_classes(cfg: CfgNode, trained_classes: bool) -> CfgNode:
    """The config of an evaluation on the classes the run was trained on (its own data, as recorded), or on other
    classes: data of no dataset, all of its classes, which the test rules (`PromptTrainer.adapt_state_dict`,
    AnchorOPT's `seen_classes`) take for classes the model was not trained on."""
    if not trained_classes:
        cfg.DATASET.NAME, cfg.DATASET.SUBSAMPLE_CLASSES = "", "all"
    cfg.freeze()
    return cfg
