"""The trainer registry and the factory that train.py calls."""

from yacs.config import CfgNode

from dassl.utils import Registry
from dassl.utils.errors import UserError

TRAINER_REGISTRY = Registry("TRAINER")


def build_trainer(cfg: CfgNode):
    """Instantiate the trainer registered under TRAINER.NAME."""
    name = cfg.TRAINER.NAME
    if not name:
        raise UserError("TRAINER.NAME is empty; choose a trainer with --trainer NAME. Registered trainers: "
                        + ", ".join(sorted(TRAINER_REGISTRY.registered_names())))
    trainer_class = TRAINER_REGISTRY.get(name)
    if cfg.VERBOSE:
        print(f"Loading trainer: {name}")
    return trainer_class(cfg)
