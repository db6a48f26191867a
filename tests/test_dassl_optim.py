"""dassl.optim: optimiser construction and per-epoch LR schedules (one scheduler step per epoch)."""

import math

import pytest
import torch
from torch import nn

from dassl.config import get_cfg_default
from dassl.optim import ConstantWarmupScheduler, build_lr_scheduler, build_optimizer
from dassl.utils.errors import UserError

LR = 0.002


def optim_cfg(**overrides):
    cfg = get_cfg_default().OPTIM
    cfg.NAME = "sgd"
    cfg.LR = LR
    for key, value in overrides.items():
        cfg[key] = value
    return cfg


def epoch_lrs(cfg, epochs):
    """The LR used in each epoch when the scheduler steps at the end of every epoch."""
    optimizer = build_optimizer(nn.Linear(2, 2), cfg)
    scheduler = build_lr_scheduler(optimizer, cfg)
    lrs = []
    for _ in range(epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_cosine_with_constant_warmup_matches_reference_example():
    cfg = optim_cfg(LR_SCHEDULER="cosine", MAX_EPOCH=5, WARMUP_EPOCH=1, WARMUP_TYPE="constant", WARMUP_CONS_LR=1e-5)
    lrs = epoch_lrs(cfg, 5)
    assert lrs[0] == pytest.approx(1e-5)
    assert [lr / LR for lr in lrs[1:]] == pytest.approx([1.0, 0.9045085, 0.6545085, 0.3454915])
    # General form: e >= 1 runs at LR * (1 + cos(pi * (e - 1) / T)) / 2.
    long = epoch_lrs(optim_cfg(LR_SCHEDULER="cosine", MAX_EPOCH=100, WARMUP_EPOCH=1, WARMUP_TYPE="constant"), 100)
    expected = [LR * (1 + math.cos(math.pi * (e - 1) / 100)) / 2 for e in range(1, 100)]
    assert long[1:] == pytest.approx(expected, rel=1e-9)
    assert long[-1] == pytest.approx(1.97e-6, rel=0.01)


def test_linear_warmup_then_cosine():
    cfg = optim_cfg(LR_SCHEDULER="cosine", MAX_EPOCH=6, WARMUP_EPOCH=2, WARMUP_TYPE="linear", WARMUP_MIN_LR=1e-5)
    lrs = epoch_lrs(cfg, 6)
    expected = [1e-5, LR / 2] + [LR * (1 + math.cos(math.pi * (e - 2) / 6)) / 2 for e in range(2, 6)]
    assert lrs == pytest.approx(expected, rel=1e-9)


def test_warmup_recount_false_starts_successor_at_warmup_epoch():
    cfg = optim_cfg(LR_SCHEDULER="cosine", MAX_EPOCH=6, WARMUP_EPOCH=2, WARMUP_TYPE="constant", WARMUP_RECOUNT=False)
    scheduler = build_lr_scheduler(build_optimizer(nn.Linear(2, 2), cfg), cfg)
    assert isinstance(scheduler, ConstantWarmupScheduler) and scheduler.successor.last_epoch == 2


def test_step_schedulers():
    assert epoch_lrs(optim_cfg(LR_SCHEDULER="single_step", STEPSIZE=(2,), GAMMA=0.1), 5) == pytest.approx(
        [LR, LR, LR * 0.1, LR * 0.1, LR * 0.01])
    # A stepsize <= 0 means MAX_EPOCH: no decay during training.
    assert epoch_lrs(optim_cfg(LR_SCHEDULER="single_step", MAX_EPOCH=4), 4) == pytest.approx([LR] * 4)
    assert epoch_lrs(optim_cfg(LR_SCHEDULER="multi_step", STEPSIZE=(1, 3), GAMMA=0.5), 5) == pytest.approx(
        [LR, LR / 2, LR / 2, LR / 4, LR / 4])


def test_scheduler_errors():
    optimizer = build_optimizer(nn.Linear(2, 2), optim_cfg())
    with pytest.raises(UserError, match='Did you mean "cosine"'):
        build_lr_scheduler(optimizer, optim_cfg(LR_SCHEDULER="cosin"))
    with pytest.raises(UserError, match="multi_step"):
        build_lr_scheduler(optimizer, optim_cfg(LR_SCHEDULER="multi_step", STEPSIZE=3))
    with pytest.raises(UserError, match="WARMUP_TYPE"):
        build_lr_scheduler(optimizer, optim_cfg(LR_SCHEDULER="cosine", WARMUP_EPOCH=1, WARMUP_TYPE="exp"))


def test_warmup_scheduler_state_round_trips_through_weights_only_load(tmp_path):
    cfg = optim_cfg(LR_SCHEDULER="cosine", MAX_EPOCH=8, WARMUP_EPOCH=1, WARMUP_TYPE="constant")
    model = nn.Linear(2, 2)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_lr_scheduler(optimizer, cfg)
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp_path / "s.pt")

    state = torch.load(tmp_path / "s.pt", weights_only=True)
    model2 = nn.Linear(2, 2)
    optimizer2 = build_optimizer(model2, cfg)
    scheduler2 = build_lr_scheduler(optimizer2, cfg)
    optimizer2.load_state_dict(state["optimizer"])
    scheduler2.load_state_dict(state["scheduler"])
    for _ in range(4):
        assert optimizer2.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]
        for opt, sched in ((optimizer, scheduler), (optimizer2, scheduler2)):
            opt.step()
            sched.step()
    assert scheduler2.successor.last_epoch == scheduler.successor.last_epoch == 6  # 1 warmup step, then 6


def test_build_optimizer_settings():
    model = nn.Linear(2, 2)
    sgd = build_optimizer(model, optim_cfg(SGD_NESTEROV=True))
    group = sgd.param_groups[0]
    assert isinstance(sgd, torch.optim.SGD) and len(group["params"]) == 2
    assert (group["lr"], group["momentum"], group["weight_decay"], group["dampening"], group["nesterov"]) == (
        LR, 0.9, 5e-4, 0, True)
    adam = build_optimizer(model.parameters(), optim_cfg(NAME="adam", ADAM_BETA1=0.8))
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["betas"] == (0.8, 0.999)
    assert isinstance(build_optimizer(model, optim_cfg(NAME="adamw")), torch.optim.AdamW)
    rmsprop = build_optimizer(model, optim_cfg(NAME="rmsprop", RMSPROP_ALPHA=0.9))
    assert isinstance(rmsprop, torch.optim.RMSprop) and rmsprop.param_groups[0]["alpha"] == 0.9
    with pytest.raises(UserError, match='Did you mean "sgd".*Available: adam, adamw'):
        build_optimizer(model, optim_cfg(NAME="sdg"))


def test_staged_lr_splits_children():
    model = nn.Sequential()
    model.add_module("backbone", nn.Linear(2, 2))
    model.add_module("head", nn.Linear(2, 3))
    optimizer = build_optimizer(model, optim_cfg(STAGED_LR=True, NEW_LAYERS=("head",), BASE_LR_MULT=0.1))
    base, new = optimizer.param_groups
    assert base["lr"] == pytest.approx(LR * 0.1) and new["lr"] == LR
    assert new["params"][0] is model.head.weight and base["params"][0] is model.backbone.weight
    with pytest.raises(TypeError, match="nn.Module"):
        build_optimizer(list(model.parameters()), optim_cfg(STAGED_LR=True, NEW_LAYERS=("head",)))
    with pytest.raises(UserError, match="NEW_LAYERS is empty"):
        build_optimizer(model, optim_cfg(STAGED_LR=True))
