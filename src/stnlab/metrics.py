"""Validation accuracy weighted to the test distribution.

GTSRB's validation split holds the same number of whole tracks of every class, so it is class-balanced,
while the test set follows the training set's class frequencies (the commonest class is ten times the
rarest). ``val/acc`` weighs every class alike; ``val/acc_weighted`` weighs class c's accuracy by its
share of the training images, the accuracy the test set would show if every class kept its validation
accuracy there, without looking at the test set:

    acc_weighted = sum_c p_c * acc_c / sum_c p_c   over the classes c present in the validation split,

with p_c = (training images of class c) / (all training images) and acc_c the fraction of class c's
validation images classified correctly.
"""

from __future__ import annotations

import torch
from torchmetrics.classification import MulticlassStatScores


class ClassWeightedAccuracy(MulticlassStatScores):
    """Accuracy with each class's accuracy weighted by ``weights[c]`` (classes absent from the data are left out),
    from torchmetrics' per-class counts.

    ``update(logits_or_preds, target)``: logits (N, C) or predicted class ids (N,), target (N,) class ids.
    With uniform weights on a class-balanced split it equals plain accuracy.
    """

    higher_is_better = True

    def __init__(self, num_classes: int, weights: torch.Tensor | None = None, **kwargs):
        # No per-batch input checks: their torch.unique would sync the GPU at every validation step.
        super().__init__(num_classes, average=None, validate_args=False, **kwargs)
        w = torch.ones(num_classes, dtype=torch.float64) if weights is None else weights.double()
        self.register_buffer("weights", w.clone(), persistent=False)

    def set_weights(self, weights: torch.Tensor) -> None:
        if weights.shape != (self.num_classes,) or bool((weights < 0).any()):
            raise ValueError(f"class weights need {self.num_classes} non-negative values, got {tuple(weights.shape)}")
        self.weights = weights.to(self.weights.device, torch.float64)

    def compute(self) -> torch.Tensor:
        tp, _, _, fn = self._final_state()
        total = (tp + fn).double()
        w = self.weights.to(total.device) * (total > 0)
        if float(w.sum()) == 0:
            return torch.tensor(0.0, device=total.device)
        return ((w * tp / total.clamp_min(1)).sum() / w.sum()).float()


def class_frequencies(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Each class's share of ``labels`` (sums to 1)."""
    counts = torch.bincount(labels.long().flatten(), minlength=num_classes)[:num_classes].double()
    return counts / counts.sum().clamp_min(1)
