"""Running averages for the training log."""

from collections import defaultdict

import torch


class AverageMeter:
    """Track the latest value and the running average (or an exponential moving average)."""

    def __init__(self, ema: bool = False):
        self.ema = ema
        self.reset()

    def reset(self) -> None:
        self.val = 0.0
        self.avg = 0.0
        self.sum = 0.0
        self.count = 0

    def update(self, val: float | torch.Tensor, n: int = 1) -> None:
        if isinstance(val, torch.Tensor):
            val = val.item()
        self.val = val
        self.sum += val * n
        self.count += n
        self.avg = self.avg * 0.9 + val * 0.1 if self.ema else self.sum / self.count


class MetricMeter:
    """A named group of AverageMeters, printed as `name val (avg)` pairs.

    >>> meter = MetricMeter()
    >>> meter.update({"loss": 0.5, "acc": 80.0})
    >>> str(meter)
    'loss 0.5000 (0.5000) acc 80.0000 (80.0000)'
    """

    def __init__(self, delimiter: str = " "):
        self.meters: dict[str, AverageMeter] = defaultdict(AverageMeter)
        self.delimiter = delimiter

    def update(self, input_dict: dict | None) -> None:
        if input_dict is None:
            return
        if not isinstance(input_dict, dict):
            raise TypeError(f"MetricMeter.update expects a dict of name -> number, got {type(input_dict).__name__}")
        for name, value in input_dict.items():
            self.meters[name].update(value)

    def __str__(self) -> str:
        return self.delimiter.join(f"{name} {m.val:.4f} ({m.avg:.4f})" for name, m in self.meters.items())
