"""PNG figures of the evaluation: confusion matrix, error gallery, robustness curves, validation curves.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot state, no display
needed) and written to ``path``; each function returns the path it wrote.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from stnlab import IDSIA_COMMITTEE_ACC
from stnlab.evaluation.metrics import Report


def _save(fig: Figure, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _short(name: str, n: int = 22) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"


def plot_confusion(report: Report, path: Path | str, title: str = "") -> Path:
    """Row-normalised confusion matrix (fraction of each true class), log colour scale; classes seen or predicted only."""
    cm = report.confusion.numpy()
    keep = np.flatnonzero((cm.sum(0) + cm.sum(1)) > 0)
    if keep.size == 0:
        keep = np.arange(cm.shape[0])
    sub = cm[np.ix_(keep, keep)].astype(float)
    rows = sub.sum(1, keepdims=True)
    frac = np.divide(sub, rows, out=np.zeros_like(sub), where=rows > 0)
    side = 3 + 0.18 * len(keep)
    fig = Figure(figsize=(side + 2.5, side))
    ax = fig.add_subplot()
    im = ax.imshow(np.where(frac > 0, frac, np.nan), norm=LogNorm(vmin=1e-3, vmax=1.0), cmap="viridis")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set_xticks(range(len(keep)), [str(k) for k in keep], fontsize=6, rotation=90)
    ax.set_yticks(range(len(keep)), [f"{k} {_short(report.names[k])}" for k in keep], fontsize=6)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title or f"accuracy {100 * report.accuracy:.2f}%  macro F1 {100 * report.f1_macro:.2f}%")
    return _save(fig, path)


def plot_errors(report: Report, path: Path | str, cols: int = 8, title: str = "") -> Path:
    """Gallery of the most confident errors: each image with its true and predicted names."""
    errors = report.errors
    cols = max(1, min(cols, len(errors)))
    rows = max(1, -(-len(errors) // cols))
    fig = Figure(figsize=(1.9 * cols, 2.3 * rows))
    fig.suptitle(title or f"{len(errors)} most confident errors", fontsize=10)
    for k in range(rows * cols):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.axis("off")
        if k >= len(errors):
            continue
        e = errors[k]
        ax.imshow(e.image.permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(
            f"true: {_short(report.names[e.true_id])}\npred: {_short(report.names[e.pred_id])} ({e.confidence:.2f})",
            fontsize=6,
        )
    if not errors:
        fig.axes[0].text(0.5, 0.5, "no errors", ha="center", va="center", transform=fig.axes[0].transAxes)
    return _save(fig, path)


def plot_robustness(
    curves: Mapping[str, Mapping[str, Sequence[tuple[float, float]]]], units: Mapping[str, str], path: Path | str
) -> Path:
    """``curves[distortion][model] = [(level, accuracy), ...]``: one panel per distortion, one line per model."""
    names = list(curves)
    fig = Figure(figsize=(4.2 * max(1, len(names)), 3.6))
    axes = fig.subplots(1, max(1, len(names)), sharey=True, squeeze=False)[0]
    for ax, dist in zip(axes, names):
        for label, points in curves[dist].items():
            xs, ys = zip(*points)
            ax.plot(xs, [100 * y for y in ys], marker="o", ms=3, label=label)
        ax.set_title(dist)
        ax.set_xlabel(units.get(dist, "level"))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (%)")
    if names:
        axes[0].legend(fontsize=7)
    return _save(fig, path)


def plot_val_curves(
    curves: Mapping[str, Sequence[tuple[float, float]]],
    path: Path | str,
    baseline: float = IDSIA_COMMITTEE_ACC,
    x: str = "epoch",
) -> Path:
    """``curves[run] = [(x, val_acc), ...]`` with the committee's accuracy (%) as a dashed line;
    ``x`` is ``epoch`` or ``minutes`` (wall minutes of training, validation included)."""
    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot()
    for label, points in curves.items():
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, [100 * y for y in ys], marker="o", ms=3, label=label)
    ax.axhline(baseline, color="k", ls="--", lw=1, label=f"IDSIA committee {baseline:.2f}%")
    if x == "epoch":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch" if x == "epoch" else "wall minutes (training + validation)")
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)
