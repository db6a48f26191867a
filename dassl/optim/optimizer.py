"""Build a torch optimiser from the OPTIM config node."""

import warnings
from collections.abc import Iterable
from typing import Optional, Union

import torch
from torch import nn
from yacs.config import CfgNode

from dassl.config.checks import check_node
from dassl.utils import check_availability
from dassl.utils.errors import UserError

AVAI_OPTIMS = ["sgd", "adam", "adamw", "amsgrad", "rmsprop", "radam"]


def _staged_param_groups(model: nn.Module, optim_cfg: CfgNode) -> list[dict]:
    """Children named in NEW_LAYERS train at LR; every other child at LR * BASE_LR_MULT."""
    if isinstance(model, nn.DataParallel):
        model = model.module
    new_layers = optim_cfg.NEW_LAYERS
    new_layers = [new_layers] if isinstance(new_layers, str) else list(new_layers)
    if not new_layers:
        raise UserError("OPTIM.STAGED_LR is on but OPTIM.NEW_LAYERS is empty; name the new child modules")
    base_params, new_params = [], []
    for name, module in model.named_children():
        (new_params if name in new_layers else base_params).extend(module.parameters())
    return [{"params": base_params, "lr": optim_cfg.LR * optim_cfg.BASE_LR_MULT}, {"params": new_params}]


def build_optimizer(
    model_or_params: Union[nn.Module, Iterable],
    optim_cfg: CfgNode,
    param_groups: Optional[list[dict]] = None,
) -> torch.optim.Optimizer:
    """Create the optimiser named by OPTIM.NAME.

    Takes all parameters of a module (frozen ones never get a gradient, so they are skipped at each
    step), an iterable of parameters, or explicit `param_groups`.
    """
    name = optim_cfg.NAME
    check_availability(name, AVAI_OPTIMS, "optimizer (OPTIM.NAME)")
    check_node(optim_cfg, "OPTIM")
    if param_groups is not None and optim_cfg.STAGED_LR:
        warnings.warn("OPTIM.STAGED_LR is ignored because explicit param_groups were given", stacklevel=2)
    if param_groups is None:
        if optim_cfg.STAGED_LR:
            if not isinstance(model_or_params, nn.Module):
                raise TypeError("OPTIM.STAGED_LR needs an nn.Module (its children are split into layers), got "
                                f"{type(model_or_params).__name__}")
            param_groups = _staged_param_groups(model_or_params, optim_cfg)
        elif isinstance(model_or_params, nn.Module):
            param_groups = model_or_params.parameters()
        else:
            param_groups = model_or_params

    lr, weight_decay = optim_cfg.LR, optim_cfg.WEIGHT_DECAY
    betas = (optim_cfg.ADAM_BETA1, optim_cfg.ADAM_BETA2)
    if name == "sgd":
        return torch.optim.SGD(
            param_groups,
            lr=lr,
            momentum=optim_cfg.MOMENTUM,
            weight_decay=weight_decay,
            dampening=optim_cfg.SGD_DAMPNING,
            nesterov=optim_cfg.SGD_NESTEROV,
        )
    if name in ("adam", "amsgrad"):
        return torch.optim.Adam(param_groups, lr=lr, weight_decay=weight_decay, betas=betas, amsgrad=name == "amsgrad")
    if name == "adamw":
        return torch.optim.AdamW(param_groups, lr=lr, weight_decay=weight_decay, betas=betas)
    if name == "rmsprop":
        return torch.optim.RMSprop(
            param_groups, lr=lr, momentum=optim_cfg.MOMENTUM, weight_decay=weight_decay, alpha=optim_cfg.RMSPROP_ALPHA
        )
    return torch.optim.RAdam(param_groups, lr=lr, weight_decay=weight_decay, betas=betas)
