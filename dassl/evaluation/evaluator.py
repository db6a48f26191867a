"""Evaluators: collect predictions over a test set and print the result block that log parsers read."""

import os.path as osp
from collections import OrderedDict, defaultdict
from typing import Optional

import numpy as np
import torch
from yacs.config import CfgNode

from dassl.utils import Registry, atomic_write
from dassl.utils.errors import UserError

EVALUATOR_REGISTRY = Registry("EVALUATOR")


# Written here rather than taken from scikit-learn, whose import alone costs a short evaluation about a second.
def macro_f1_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The mean over the labels in `y_true` of each label's F1 = 2 TP / (2 TP + FP + FN) (0 where undefined), as
    scikit-learn's f1_score(average="macro", labels=np.unique(y_true))."""
    scores = []
    for label in np.unique(y_true):
        tp = np.sum((y_true == label) & (y_pred == label))
        wrong = np.sum((y_true == label) != (y_pred == label))  # FP + FN
        scores.append(2 * tp / (2 * tp + wrong) if tp else 0.0)
    return float(np.mean(scores))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Rows: true labels, columns: predicted ones (both over every label seen), each row normalised to sum 1."""
    labels = np.unique(np.concatenate([y_true, y_pred]))
    counts = np.zeros((len(labels), len(labels)))
    np.add.at(counts, (np.searchsorted(labels, y_true), np.searchsorted(labels, y_pred)), 1)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


class EvaluatorBase:
    def __init__(self, cfg: CfgNode):
        self.cfg = cfg

    def reset(self) -> None:
        raise NotImplementedError

    def process(self, mo: torch.Tensor, gt: torch.Tensor) -> None:
        raise NotImplementedError

    def evaluate(self) -> "OrderedDict[str, float]":
        raise NotImplementedError


@EVALUATOR_REGISTRY.register()
class Classification(EvaluatorBase):
    """Accuracy, error rate and macro-F1 (optionally per-class accuracy and a confusion matrix).

    Numbers are printed in the format of ATPrompt's published logs (accuracy with 3 decimals,
    error and macro-F1 with 2), which `tools/parse_test_res.py` reads back.
    """

    def __init__(self, cfg: CfgNode, lab2cname: Optional[dict[int, str]] = None, **kwargs):
        super().__init__(cfg)
        self._lab2cname = lab2cname or {}
        self.reset()

    def reset(self) -> None:
        self._correct = 0
        self._total = 0
        self._y_true: list[int] = []
        self._y_pred: list[int] = []
        self._per_class_res = defaultdict(list) if self.cfg.TEST.PER_CLASS_RESULT else None

    def process(self, mo: torch.Tensor, gt: torch.Tensor) -> None:
        """Add a batch: `mo` are scores of shape (batch, classes), `gt` the labels."""
        pred = mo.argmax(dim=1)
        matches = pred.eq(gt).int()
        self._correct += int(matches.sum().item())
        self._total += gt.shape[0]
        self._y_true.extend(gt.tolist())
        self._y_pred.extend(pred.tolist())
        if self._per_class_res is not None:
            for label, match in zip(gt.tolist(), matches.tolist()):
                self._per_class_res[label].append(match)

    def evaluate(self) -> "OrderedDict[str, float]":
        if self._total == 0:
            raise UserError("Nothing to evaluate: the evaluation split has no samples (check the dataset and split)")
        acc = 100.0 * self._correct / self._total
        err = 100.0 - acc
        # Macro-F1 over the labels present in the ground truth (a subset when testing on some classes).
        macro_f1 = 100.0 * macro_f1_score(np.asarray(self._y_true), np.asarray(self._y_pred))
        results = OrderedDict(accuracy=acc, error_rate=err, macro_f1=macro_f1)
        print(
            "=> result\n"
            f"* total: {self._total:,}\n"
            f"* correct: {self._correct:,}\n"
            f"* accuracy: {acc:.3f}%\n"
            f"* error: {err:.2f}%\n"
            f"* macro_f1: {macro_f1:.2f}%"
        )

        if self._per_class_res is not None:
            print("=> per-class result")
            accs = []
            for label in sorted(self._per_class_res):
                res = self._per_class_res[label]
                correct, total = sum(res), len(res)
                class_acc = 100.0 * correct / total
                accs.append(class_acc)
                classname = self._lab2cname.get(label, str(label))
                print(
                    f"* class: {label} ({classname})\ttotal: {total:,}\tcorrect: {correct:,}\tacc: {class_acc:.2f}%"
                )
            mean_acc = float(np.mean(accs))
            print(f"* average: {mean_acc:.1f}%")
            results["perclass_accuracy"] = mean_acc

        if self.cfg.TEST.COMPUTE_CMAT:
            cmat = confusion_matrix(np.asarray(self._y_true), np.asarray(self._y_pred))
            save_path = osp.join(self.cfg.OUTPUT_DIR, "cmat.pt")
            # A tensor (not a NumPy array) so that it loads with torch.load(weights_only=True).
            atomic_write(save_path, lambda tmp: torch.save(torch.from_numpy(cmat), tmp))
            print(f"Confusion matrix is saved to {save_path}")

        return results


def build_evaluator(cfg: CfgNode, **kwargs) -> EvaluatorBase:
    """Create the evaluator named by TEST.EVALUATOR; keyword arguments (e.g. lab2cname) are passed on."""
    if cfg.VERBOSE:
        print(f"Loading evaluator: {cfg.TEST.EVALUATOR}")
    return EVALUATOR_REGISTRY.get(cfg.TEST.EVALUATOR)(cfg, **kwargs)
