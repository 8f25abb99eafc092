"""Classification report of one model on one split: torchmetrics figures, confused pairs, worst errors.

Inputs everywhere: ``images`` uint8 (N, 3, H, W) in [0, 255] (float in the same range
works too), ``labels`` int64 (N,) class ids, ``logits`` float (N, num_classes).
Per-class figures are indexed by class id; a class without images in the split
has ``support`` 0 and accuracy ``None`` (and does not count in the macro F1, as
torchmetrics leaves out classes that are neither present nor predicted).

``groups`` int64 (N,), where given, names the unit that fails together: GTSRB's
validation images come in tracks of ~30 frames of one sign, so 3,870 images are 129
samples, not 3,870. The accuracy interval resamples whole groups (a cluster bootstrap);
a negative group id (test images have track -1: no track) makes an image its own group.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score

from stnlab.data.classes import class_names


@dataclass(frozen=True)
class Interval:
    """A bootstrap confidence interval around ``estimate``, from ``samples`` resamplings of ``groups`` units."""

    estimate: float
    low: float
    high: float
    level: float
    groups: int
    samples: int

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "method": "cluster bootstrap over groups (tracks)"}


def group_interval(
    correct: torch.Tensor,
    groups: torch.Tensor,
    level: float = 0.95,
    samples: int = 2000,
    seed: int = 0,
    baseline: torch.Tensor | None = None,
) -> Interval:
    """Percentile bootstrap of the accuracy, drawing whole groups with replacement.

    ``correct`` bool (N,), ``groups`` int64 (N,). Each resample draws as many groups as the
    split has and pools their images, so a track that fails as a whole moves the accuracy
    by its ~30 frames at once, as it does between validation splits.

    ``baseline`` bool (N,), another model on the same images: the paired bootstrap of accuracy(correct) -
    accuracy(baseline): both models are scored on the same resampled tracks, so the tracks' shared difficulty
    cancels.
    """
    scored = [correct] if baseline is None else [correct, baseline]
    for c in scored:
        if c.shape != groups.shape or c.ndim != 1 or len(c) == 0:
            raise ValueError(f"correct {tuple(c.shape)} and groups {tuple(groups.shape)} must be equal, non-empty (N,)")
    groups = groups.cpu()
    groups = torch.where(groups < 0, -1 - torch.arange(len(groups)), groups)  # no track: a group of one
    _, group = torch.unique(groups, return_inverse=True)
    n_groups = int(group.max()) + 1
    draws = torch.randint(n_groups, (samples, n_groups), generator=torch.Generator().manual_seed(seed))
    sizes = torch.bincount(group, minlength=n_groups).double()[draws].sum(1)
    hits = [torch.zeros(n_groups, dtype=torch.float64).index_add_(0, group, c.cpu().double()) for c in scored]
    resampled = [h[draws].sum(1) / sizes for h in hits]
    estimate, values = correct.double().mean().item(), resampled[0]
    if baseline is not None:
        estimate, values = estimate - baseline.double().mean().item(), values - resampled[1]
    tail = (1 - level) / 2
    low, high = torch.quantile(values, torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist()
    return Interval(estimate, low, high, level, n_groups, samples)


@dataclass
class ErrorCase:
    """One misclassified image: its position in the split, true and predicted class, softmax confidence."""

    index: int
    true_id: int
    pred_id: int
    confidence: float
    image: torch.Tensor  # uint8 (3, H, W) on the CPU

    def as_dict(self, names: Sequence[str]) -> dict[str, Any]:
        return {
            "index": self.index,
            "true_id": self.true_id,
            "true": names[self.true_id],
            "pred_id": self.pred_id,
            "pred": names[self.pred_id],
            "confidence": round(self.confidence, 6),
        }


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
    interval: Interval | None = None  # of the accuracy, where the groups (tracks) are known
    correct: torch.Tensor | None = None  # bool (N,): each image right or wrong, in split order
    comparison: dict[str, Any] | None = None  # against a baseline model on the same images (evaluate.py baseline=)

    @property
    def num_errors(self) -> int:
        return self.num_images - int(self.confusion.diagonal().sum())

    def most_confused(self, k: int = 10) -> list[dict[str, Any]]:
        """The ``k`` largest off-diagonal cells of the confusion matrix, largest first (ties by class ids)."""
        off = self.confusion.clone().fill_diagonal_(0)
        cells = sorted(((int(off[t, p]), t, p) for t, p in off.nonzero().tolist()), key=lambda c: (-c[0], c[1], c[2]))
        return [
            {
                "true_id": t,
                "true": self.names[t],
                "pred_id": p,
                "pred": self.names[p],
                "count": n,
                "fraction_of_true": n / self.support[t],
            }
            for n, t, p in cells[:k]
        ]

    def per_class(self) -> list[dict[str, Any]]:
        return [
            {"class_id": i, "name": name, "support": self.support[i], "accuracy": self.per_class_accuracy[i]}
            for i, name in enumerate(self.names)
        ]

    def as_dict(self) -> dict[str, Any]:
        return {
            "num_images": self.num_images,
            "accuracy": self.accuracy,
            "accuracy_interval": self.interval.as_dict() if self.interval else None,
            "vs_baseline": self.comparison,
            "f1_macro": self.f1_macro,
            "num_errors": self.num_errors,
            "most_confused": self.most_confused(),
            "per_class": self.per_class(),
            "errors": [e.as_dict(self.names) for e in self.errors],
            "confusion_matrix": self.confusion.tolist(),
        }


class ReportBuilder:
    """Accumulates batches of (logits, labels, images) into a :class:`Report`.

    Scalars and the confusion matrix come from a torchmetrics ``MetricCollection``
    (synchronised across processes under DDP); the error gallery keeps the
    ``max_errors`` most confident mistakes seen by this process.
    """

    def __init__(self, num_classes: int, max_errors: int = 32, names: Sequence[str] | None = None):
        self.max_errors = max_errors
        self.names = list(names) if names is not None else class_names(num_classes)
        self.metrics = MetricCollection(
            {
                "accuracy": MulticlassAccuracy(num_classes, average="micro"),
                "per_class": MulticlassAccuracy(num_classes, average="none"),
                "f1_macro": MulticlassF1Score(num_classes, average="macro"),
                "confusion": MulticlassConfusionMatrix(num_classes),
            }
        )
        self.device = torch.device("cpu")
        self.seen = 0
        self._errors: list[ErrorCase] = []

    def to(self, device) -> ReportBuilder:
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
                self._errors.append(
                    ErrorCase(
                        self.seen + i,
                        int(labels_cpu[i]),
                        int(pred[i]),
                        float(conf[i]),
                        images[i].detach().to("cpu", torch.uint8).clone(),
                    )
                )
            self._errors.sort(key=lambda e: (-e.confidence, e.index))
            del self._errors[self.max_errors :]
        self.seen += len(labels)

    def compute(self) -> Report:
        r = self.metrics.compute()
        confusion = r["confusion"].long().cpu()
        support = confusion.sum(1).tolist()
        per_class = [float(a) if s else None for a, s in zip(r["per_class"].cpu().tolist(), support)]
        return Report(
            num_images=int(confusion.sum()),
            accuracy=float(r["accuracy"]),
            f1_macro=float(r["f1_macro"]),
            per_class_accuracy=per_class,
            support=support,
            confusion=confusion,
            errors=list(self._errors),
            names=self.names,
        )


@torch.no_grad()
def top1_accuracy(
    model: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int = 500,
    device: torch.device | str = "cpu",
    distort: Callable[..., torch.Tensor] | None = None,
) -> float:
    """Top-1 accuracy of ``model`` (images in [0, 255] -> logits) on a split, in batches; ``distort(x, index=...)``
    changes each batch first (``index``: the batch's positions in the split)."""
    hits = torch.zeros((), dtype=torch.long, device=device)
    for i in range(0, len(labels), batch_size):
        x = images[i : i + batch_size].to(device)
        if distort is not None:
            x = distort(x, index=torch.arange(i, i + len(x)))
        hits += (model(x).argmax(-1) == labels[i : i + batch_size].to(device)).sum()
    return float(hits) / max(len(labels), 1)


@torch.no_grad()
def evaluate(
    model: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int | None = None,
    batch_size: int = 500,
    max_errors: int = 32,
    device: torch.device | str = "cpu",
    groups: torch.Tensor | None = None,
    names: Sequence[str] | None = None,
) -> Report:
    """Run ``model`` (uint8 images -> logits) over a split in batches and build its :class:`Report`
    (with the accuracy's interval over ``groups``, where given). ``num_classes``: the model's, else the
    width of its logits; ``names``: the classes' (its checkpoint's), else the default names of that many."""
    builder = None
    correct = []
    for i in range(0, len(labels), batch_size):
        x = images[i : i + batch_size].to(device)
        y = labels[i : i + batch_size].to(device)
        logits = model(x)
        if builder is None:
            classes = num_classes or getattr(model, "num_classes", None) or logits.shape[-1]
            builder = ReportBuilder(int(classes), max_errors, names).to(device)
        builder.update(logits, y, x)
        correct.append((logits.argmax(-1) == y).cpu())
    if builder is None:  # no images: the report of an empty split
        builder = ReportBuilder(int(num_classes or getattr(model, "num_classes", 1)), max_errors, names).to(device)
    report = builder.compute()
    report.correct = torch.cat(correct) if correct else torch.zeros(0, dtype=torch.bool)
    if groups is not None and len(labels):
        report.interval = group_interval(report.correct, groups)
    return report
