"""Top-k accuracy of a batch."""

import torch


def compute_accuracy(
    output: torch.Tensor | tuple | list, target: torch.Tensor, topk: tuple[int, ...] = (1,)
) -> list[torch.Tensor]:
    """Percentage of samples whose label is among the k highest scores, for each k in `topk`.

    `output` is (batch, classes); a tuple or list means (logits, ...) and its first element is used.
    Returns one single-element tensor per k, as Dassl does (callers use `[0].item()`).
    """
    if isinstance(output, (tuple, list)):
        output = output[0]
    batch_size = target.size(0)
    _, pred = output.topk(max(topk), dim=1, largest=True, sorted=True)
    correct = pred.t().eq(target.view(1, -1).expand(pred.size(1), -1))
    return [correct[:k].reshape(-1).float().sum(0, keepdim=True).mul_(100.0 / batch_size) for k in topk]
