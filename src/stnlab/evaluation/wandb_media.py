"""W&B objects for evaluation results: confusion-matrix chart, error table with images, robustness line plots.

Each function returns a ``{key: value}`` dict ready for ``run.log``; keys are
``<prefix>/...`` (``prefix`` is the split, e.g. ``test``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from stnlab.evaluation.metrics import Report


def report_media(
    report: Report, prefix: str, paths: Mapping[str, Path] | None = None, max_rows: int = 64
) -> dict[str, Any]:
    """Interactive confusion matrix (``wandb.plot.confusion_matrix``), the errors as a ``wandb.Table`` with
    images, per-class accuracy as a table, and the PNGs of ``paths`` (what ``write_report`` wrote) as images."""
    import wandb  # heavy to import (seconds): only the code that logs to W&B loads it

    # W&B's chart counts (true, predicted) pairs: each cell of the matrix, repeated its count of times.
    classes = torch.arange(len(report.confusion))
    y_true, preds = torch.cartesian_prod(classes, classes).repeat_interleave(report.confusion.flatten(), 0).T.tolist()
    # The rows of the JSON report: each error with its image, and the classes the split has.
    errors = [
        [wandb.Image(e.image.permute(1, 2, 0).numpy()), *e.as_dict(report.names).values()]
        for e in report.errors[:max_rows]
    ]
    per_class = [list(c.values()) for c in report.per_class() if c["support"]]
    out: dict[str, Any] = {
        f"{prefix}/confusion_matrix": wandb.plot.confusion_matrix(
            y_true=y_true, preds=preds, class_names=report.names, title=f"{prefix} confusion matrix"
        ),
        f"{prefix}/errors": wandb.Table(
            columns=["image", "index", "true_id", "true", "pred_id", "pred", "confidence"], data=errors
        ),
        f"{prefix}/per_class": wandb.Table(columns=["class_id", "name", "support", "accuracy"], data=per_class),
    }
    for key, path in (paths or {}).items():
        if path.suffix == ".png":
            out[f"{prefix}/{key}_png"] = wandb.Image(str(path))
    return out


def robustness_media(
    curves: Mapping[str, Mapping[str, Sequence[tuple[float, float]]]], units: Mapping[str, str]
) -> dict[str, Any]:
    """One ``wandb.plot.line_series`` per distortion (x = level, one line per model) plus the raw table."""
    import wandb  # heavy to import (seconds): only the code that logs to W&B loads it

    out: dict[str, Any] = {}
    rows = wandb.Table(columns=["distortion", "model", "level", "accuracy"])
    for dist, per_model in curves.items():
        labels = list(per_model)
        xs = [[lv for lv, _ in per_model[m]] for m in labels]
        ys = [[acc for _, acc in per_model[m]] for m in labels]
        out[f"robustness/{dist}"] = wandb.plot.line_series(
            xs=xs, ys=ys, keys=labels, title=f"accuracy vs {dist}", xname=units.get(dist, "level")
        )
        for m in labels:
            for lv, acc in per_model[m]:
                rows.add_data(dist, m, lv, acc)
    out["robustness/table"] = rows
    return out
