"""LR schedulers from the OPTIM config node, stepped once per epoch."""

from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler, MultiStepLR, StepLR
from yacs.config import CfgNode

from dassl.config.checks import check_node
from dassl.utils import check_availability
from dassl.utils.errors import UserError

AVAI_SCHEDS = ["single_step", "multi_step", "cosine"]


class _BaseWarmupScheduler(LRScheduler):
    """Run a warmup rule for `warmup_epoch` steps, then hand every step to `successor`."""

    def __init__(self, optimizer: Optimizer, successor: LRScheduler, warmup_epoch: int, last_epoch: int = -1):
        self.successor = successor
        self.warmup_epoch = warmup_epoch
        super().__init__(optimizer, last_epoch)

    def warmup_lr(self) -> list[float]:
        raise NotImplementedError

    def get_lr(self) -> list[float]:
        if self.last_epoch >= self.warmup_epoch:
            return self.successor.get_last_lr()
        return self.warmup_lr()

    def step(self, epoch: Any = None) -> None:
        if self.last_epoch >= self.warmup_epoch:
            self.successor.step(epoch)
            self._last_lr = self.successor.get_last_lr()
        else:
            super().step(epoch)

    # The successor is stored as its own state dict (not as a Python object), so that checkpoints
    # stay loadable with torch.load(weights_only=True).
    def state_dict(self) -> dict[str, Any]:
        state = {key: value for key, value in self.__dict__.items() if key not in ("optimizer", "successor")}
        state["successor"] = self.successor.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        successor = state.pop("successor")
        if not isinstance(successor, dict):  # Dassl.pytorch checkpoints hold the successor object itself
            successor = {key: value for key, value in vars(successor).items() if key != "optimizer"}
        self.successor.load_state_dict(successor)
        self.__dict__.update(state)


class ConstantWarmupScheduler(_BaseWarmupScheduler):
    """LR = `cons_lr` during warmup."""

    def __init__(self, optimizer, successor, warmup_epoch: int, cons_lr: float, last_epoch: int = -1):
        self.cons_lr = cons_lr
        super().__init__(optimizer, successor, warmup_epoch, last_epoch)

    def warmup_lr(self) -> list[float]:
        return [self.cons_lr for _ in self.base_lrs]


class LinearWarmupScheduler(_BaseWarmupScheduler):
    """LR = `min_lr` at step 0, then base_lr * t / warmup_epoch."""

    def __init__(self, optimizer, successor, warmup_epoch: int, min_lr: float, last_epoch: int = -1):
        self.min_lr = min_lr
        super().__init__(optimizer, successor, warmup_epoch, last_epoch)

    def warmup_lr(self) -> list[float]:
        if self.last_epoch == 0:
            return [self.min_lr for _ in self.base_lrs]
        return [lr * self.last_epoch / self.warmup_epoch for lr in self.base_lrs]


def build_lr_scheduler(optimizer: Optimizer, optim_cfg: CfgNode) -> LRScheduler:
    """Create OPTIM.LR_SCHEDULER, wrapped in a warmup scheduler when OPTIM.WARMUP_EPOCH > 0."""
    name = optim_cfg.LR_SCHEDULER
    check_availability(name, AVAI_SCHEDS, "LR scheduler (OPTIM.LR_SCHEDULER)")
    check_node(optim_cfg, "OPTIM")
    stepsize = optim_cfg.STEPSIZE
    if name == "single_step":
        if isinstance(stepsize, (list, tuple)):
            stepsize = stepsize[-1]
        if not isinstance(stepsize, int):
            raise UserError(f"OPTIM.STEPSIZE must be an int (or a list ending in one) for single_step: {stepsize!r}")
        step_size = stepsize if stepsize > 0 else optim_cfg.MAX_EPOCH
        scheduler = StepLR(optimizer, step_size=step_size, gamma=optim_cfg.GAMMA)
    elif name == "multi_step":
        if not isinstance(stepsize, (list, tuple)):
            raise UserError(f"OPTIM.STEPSIZE must be a list of epochs for multi_step, got {stepsize!r}")
        scheduler = MultiStepLR(optimizer, milestones=list(stepsize), gamma=optim_cfg.GAMMA)
    else:
        scheduler = CosineAnnealingLR(optimizer, T_max=float(optim_cfg.MAX_EPOCH))

    if optim_cfg.WARMUP_EPOCH > 0:
        if not optim_cfg.WARMUP_RECOUNT:
            scheduler.last_epoch = optim_cfg.WARMUP_EPOCH
        warmup_type = optim_cfg.WARMUP_TYPE
        if warmup_type == "constant":
            scheduler = ConstantWarmupScheduler(optimizer, scheduler, optim_cfg.WARMUP_EPOCH, optim_cfg.WARMUP_CONS_LR)
        elif warmup_type == "linear":
            scheduler = LinearWarmupScheduler(optimizer, scheduler, optim_cfg.WARMUP_EPOCH, optim_cfg.WARMUP_MIN_LR)
        else:
            raise UserError(f'Unknown OPTIM.WARMUP_TYPE "{warmup_type}"; use "constant" or "linear"')
    return scheduler
