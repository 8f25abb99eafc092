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
from torchmetrics import Metric


class ClassWeightedAccuracy(Metric):
    """Accuracy with each class's accuracy weighted by ``weights[c]`` (classes absent from the data are left out).

    ``update(logits_or_preds, target)``: logits (N, C) or predicted class ids (N,), target (N,) class ids.
    With uniform weights on a class-balanced split it equals plain accuracy.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, num_classes: int, weights: torch.Tensor | None = None, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.add_state("correct", torch.zeros(self.num_classes, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros(self.num_classes, dtype=torch.float64), dist_reduce_fx="sum")
        w = torch.ones(self.num_classes, dtype=torch.float64) if weights is None else weights.double()
        self.register_buffer("weights", w.clone(), persistent=False)

    def set_weights(self, weights: torch.Tensor) -> None:
        if weights.shape != (self.num_classes,) or bool((weights < 0).any()):
            raise ValueError(f"class weights need {self.num_classes} non-negative values, got {tuple(weights.shape)}")
        self.weights = weights.to(self.weights.device, torch.float64)

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        if preds.ndim == 2:
            preds = preds.argmax(dim=1)
        target = target.long()
        self.total += torch.bincount(target, minlength=self.num_classes)[: self.num_classes].double()
        hits = target[preds == target]
        self.correct += torch.bincount(hits, minlength=self.num_classes)[: self.num_classes].double()

    def compute(self) -> torch.Tensor:
        present = self.total > 0
        w = self.weights.to(self.total.device) * present
        if float(w.sum()) == 0:
            return torch.tensor(0.0, device=self.total.device)
        acc = torch.where(present, self.correct / self.total.clamp_min(1), torch.zeros_like(self.total))
        return ((w * acc).sum() / w.sum()).float()


def class_frequencies(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Each class's share of ``labels`` (sums to 1)."""
    counts = torch.bincount(labels.long().flatten(), minlength=num_classes)[:num_classes].double()
    return counts / counts.sum().clamp_min(1)
