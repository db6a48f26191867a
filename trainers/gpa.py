"""Gaussian prompt aggregation (GPA, PromptSRC): the learned prompts of every epoch, averaged with Gaussian weights.

Epoch e (1-based) of E weighs w_e = pdf_N(mean, std^2)(e) / sum_k pdf_N(mean, std^2)(k). After each epoch its weighted
prompts join a running sum, w_e * p_e in each parameter's dtype (as the original); after the last, the sum replaces
the prompts. The sum is training state that a checkpoint carries, so a resumed run ends with the same average.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn


def gaussian_weights(mean: float, std: float, epochs: int) -> list[float]:
    """w_1..w_epochs: the normal density at each epoch, normalised to sum 1 (in numpy's float64, as the original
    computed them, so that they are the same to the last bit)."""
    scale = 1 / (std * np.sqrt(2 * np.pi))
    density = np.array([scale * np.exp(-0.5 * ((e - mean) / std) ** 2) for e in range(1, epochs + 1)])
    total = sum(density)
    if epochs and not total > 0:  # every epoch so many standard deviations from the mean that its density is 0
        raise ValueError(f"the Gaussian of mean {mean} and standard deviation {std} is 0 at each of epochs 1-{epochs}")
    return [float(d) for d in density / total]


class GaussianPromptAggregation:
    """The running sum of `params` (name -> parameter) over the epochs, weighted by `gaussian_weights`."""

    def __init__(self, params: dict[str, nn.Parameter], mean: float, std: float, epochs: int) -> None:
        self.params = params
        self.weights = gaussian_weights(mean, std, epochs)
        self.total: dict[str, torch.Tensor] = {}
        self.epochs: list[int] = []  # those added to the sum

    def add(self, epoch: int) -> None:
        """Add the prompts after `epoch` (1-based) with its weight."""
        weight = self.weights[epoch - 1]
        with torch.no_grad():
            for name, param in self.params.items():
                weighted = param.detach() * weight
                self.total[name] = weighted if name not in self.total else self.total[name] + weighted
        self.epochs.append(epoch)

    def missing_weight(self) -> float:
        """The weight of the epochs not in the sum (a run resumed from a checkpoint without it)."""
        return sum(w for e, w in enumerate(self.weights, start=1) if e not in self.epochs)

    def apply(self) -> None:
        """Replace the prompts by the sum."""
        with torch.no_grad():
            for name, param in self.params.items():
                param.copy_(self.total[name])

    def state_dict(self) -> dict:
        return {"total": dict(self.total), "epochs": list(self.epochs)}

    def load_state_dict(self, state: dict) -> None:
        self.total = {name: value.to(self.params[name].device) for name, value in state["total"].items()}
        self.epochs = list(state["epochs"])

    def describe(self) -> str:
        """The epochs that count (weight >= 0.001) and their weights, e.g. "13: 0.054, 14: 0.242, ..."."""
        return ", ".join(f"{e}: {w:.3f}" for e, w in enumerate(self.weights, start=1) if w >= 0.001)
