"""A trained model as an evaluation or a classifier finds it: the checkpoint in its run folder, and what the run
recorded there (trainers/base.py `checkpoint_meta`: the trainer, the settings, the backbone, the prompt, the classes).
"""

from __future__ import annotations

from dataclasses import dataclass

from dassl.engine.run_folder import checkpoint_folders
from dassl.utils import load_checkpoint
from dassl.utils.errors import UserError
from trainers.base import checkpoint_file
from trainers.config import Training


@dataclass(frozen=True)
class TrainedModel:
    """The checkpoint file `path` of the training run in `folder`, loaded."""

    folder: str
    path: str
    checkpoint: dict

    @property
    def meta(self) -> dict:
        """What the run recorded in the checkpoint; empty for the original code's checkpoints."""
        return self.checkpoint.get("meta") or {}

    @property
    def classnames(self) -> list[str] | None:
        """The classes it was trained on, in label order; None for checkpoints made before they were recorded."""
        return self.meta.get("classnames")

    def attributes(self) -> list[tuple[str, int]] | None:
        """ATPrompt's attribute words and soft-token counts it learned with; None when not recorded."""
        prompt = self.meta.get("prompt") or {}
        if "attributes" not in prompt:
            return None
        return list(zip(prompt["attributes"], prompt["n_att"]))

    def training(self) -> Training | None:
        """What an evaluation takes from the run that trained it; None for a checkpoint that records no settings."""
        settings = self.meta.get("settings")
        return Training(settings, self.attributes(), self.path) if settings else None


def find_model(folder: str, epoch: int | None = None) -> TrainedModel | None:
    """The checkpoint of epoch `epoch` (None: the best, else the latest) in the run folder `folder`; None when the
    folder holds no checkpoint."""
    names = checkpoint_folders(folder)
    if not names:
        return None
    if len(names) > 1:
        raise UserError(f"{folder} holds the checkpoints of several models ({', '.join(n + '/' for n in names)}); "
                        "pass the output folder of one training run")
    path = checkpoint_file(folder, names[0], epoch)
    return TrainedModel(folder, path, load_checkpoint(path))
