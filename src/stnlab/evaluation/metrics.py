"""Classification report of one model on one split: torchmetrics figures, confused pairs, worst errors.

Inputs everywhere: ``images`` uint8 (N, 3, H, W) in [0, 255] (float in the same range
works too), ``labels`` int64 (N,) class ids, ``logits`` float (N, num_classes).
Per-class figures are indexed by class id; a class without images in the split
has ``support`` 0 and accuracy ``None`` (and does not count in the macro F1, as
torchmetrics leaves out classes that are neither present nor predicted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score

from stnlab.data.classes import GTSRB_CLASSES


def class_names(num_classes: int) -> list[str]:
    """The official GTSRB names for 43 classes, else ``class <id>``."""
    if num_classes == len(GTSRB_CLASSES):
        return list(GTSRB_CLASSES)
    return [f"class {i}" for i in range(num_classes)]


@dataclass
class ErrorCase:
    """One misclassified image: its position in the split, true and predicted class, softmax confidence."""

    index: int
    true_id: int
    pred_id: int
    confidence: float
    image: torch.Tensor  # uint8 (3, H, W) on the CPU

    def as_dict(self, names: Sequence[str]) -> dict[str, Any]:
        return {"index": self.index, "true_id": self.true_id, "true": names[self.true_id], "pred_id": self.pred_id,
                "pred": names[self.pred_id], "confidence": round(self.confidence, 6)}


@dataclass
class Report:
    """What :class:`ReportBuilder` computes; ``as_dict`` is the JSON written next to the plots."""

    num_images: int
    accuracy: float
    f1_macro: float
    per_class_accuracy: list[float | None]
    support: list[int]
    confusion: torch.Tensor  # int64 (C, C): rows = true class, columns = predicted class
    errors: list[ErrorCase] = field(default_factory=list)  # most confident first
    names: list[str] = field(default_factory=list)

    def most_confused(self, k: int = 10) -> list[dict[str, Any]]:
        """The ``k`` largest off-diagonal cells of the confusion matrix, largest first (ties by class ids)."""
        off = self.confusion.clone()
        off.fill_diagonal_(0)
        cells = [(int(off[t, p]), t, p) for t, p in off.nonzero().tolist()]
        cells.sort(key=lambda c: (-c[0], c[1], c[2]))
        out = []
        for n, t, p in cells[:k]:
            out.append({"true_id": t, "true": self.names[t], "pred_id": p, "pred": self.names[p], "count": n,
                        "fraction_of_true": n / self.support[t]})
        return out

    def as_dict(self, top_pairs: int = 10) -> dict[str, Any]:
        return {
            "num_images": self.num_images,
            "accuracy": self.accuracy,
            "f1_macro": self.f1_macro,
            "num_errors": int(self.num_images - self.confusion.diagonal().sum()),
            "most_confused": self.most_confused(top_pairs),
            "per_class": [
                {"class_id": i, "name": self.names[i], "support": self.support[i], "accuracy": self.per_class_accuracy[i]}
                for i in range(len(self.names))
            ],
            "errors": [e.as_dict(self.names) for e in self.errors],
            "confusion_matrix": self.confusion.tolist(),
        }


class ReportBuilder:
    """Accumulates batches of (logits, labels, images) into a :class:`Report`.

    Scalars and the confusion matrix come from a torchmetrics ``MetricCollection``
    (synchronised across processes under DDP); the error gallery keeps the
    ``max_errors`` most confident mistakes seen by this process.
    """

    def __init__(self, num_classes: int = 43, max_errors: int = 32, names: Sequence[str] | None = None):
        self.num_classes, self.max_errors = num_classes, max_errors
        self.names = list(names) if names is not None else class_names(num_classes)
        self.metrics = MetricCollection({
            "accuracy": MulticlassAccuracy(num_classes, average="micro"),
            "per_class": MulticlassAccuracy(num_classes, average="none"),
            "f1_macro": MulticlassF1Score(num_classes, average="macro"),
            "confusion": MulticlassConfusionMatrix(num_classes),
        })
        self.device = torch.device("cpu")
        self.seen = 0
        self._errors: list[ErrorCase] = []

    def to(self, device) -> "ReportBuilder":
        self.device = torch.device(device)
        self.metrics = self.metrics.to(self.device)
        return self

    @torch.no_grad()
    def update(self, logits: torch.Tensor, labels: torch.Tensor, images: torch.Tensor | None = None) -> None:
        logits = logits.detach()
        self.metrics.update(logits.to(self.device), labels.to(self.device))
        if images is not None and self.max_errors > 0:
            conf, pred = logits.float().softmax(-1).max(-1)
            wrong = (pred != labels.to(pred.device)).nonzero().flatten()
            wrong = wrong[conf[wrong].argsort(descending=True)[: self.max_errors]].cpu()
            conf, pred, labels_cpu = conf.cpu(), pred.cpu(), labels.cpu()
            for i in wrong.tolist():
                self._errors.append(ErrorCase(self.seen + i, int(labels_cpu[i]), int(pred[i]), float(conf[i]),
                                              images[i].detach().to("cpu", torch.uint8).clone()))
            self._errors.sort(key=lambda e: (-e.confidence, e.index))
            del self._errors[self.max_errors :]
        self.seen += len(labels)

    def compute(self) -> Report:
        r = self.metrics.compute()
        confusion = r["confusion"].long().cpu()
        support = confusion.sum(1).tolist()
        per_class = [float(a) if s else None for a, s in zip(r["per_class"].cpu().tolist(), support)]
        return Report(num_images=int(confusion.sum()), accuracy=float(r["accuracy"]), f1_macro=float(r["f1_macro"]),
                      per_class_accuracy=per_class, support=support, confusion=confusion,
                      errors=list(self._errors), names=self.names)


@torch.no_grad()
def evaluate(model: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, labels: torch.Tensor,
             num_classes: int = 43, batch_size: int = 500, max_errors: int = 32, device: torch.device | str = "cpu") -> Report:
    """Run ``model`` (uint8 images -> logits) over a split in batches and build its :class:`Report`."""
    builder = ReportBuilder(num_classes, max_errors).to(device)
    for i in range(0, len(labels), batch_size):
        x = images[i : i + batch_size].to(device)
        builder.update(model(x), labels[i : i + batch_size].to(device), x)
    return builder.compute()
