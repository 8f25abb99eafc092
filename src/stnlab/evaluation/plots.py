"""PNG figures of the evaluation: confusion matrix, error gallery, robustness curves, validation curves.

Each figure stands alone: a title saying what was measured, on which split and how many images, axes with
units, class names, a legend. ``<name>_figure(...)`` builds a ``matplotlib.figure.Figure`` (no pyplot state,
no display needed) and :func:`save` writes it.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from stnlab import IDSIA_COMMITTEE_ACC
from stnlab.evaluation.metrics import Report
from stnlab.files import written_whole

# Characters per line of an error caption: the longest GTSRB name (40 characters) takes two lines.
CAPTION_CHARS = 24


def save(fig: Figure, path: Path | str) -> Path:
    """Write ``fig`` to ``path`` whole (its folder made if needed: a report rewritten while a sweep runs is never
    seen half-drawn), in the format its suffix names; returns the path."""
    path = Path(path)
    with written_whole(path) as part:
        fig.savefig(part, dpi=110, bbox_inches="tight", format=path.suffix.lstrip("."))
    return path


def cut(text: str, n: int | None) -> str:
    """``text``, cut to ``n`` characters (the last an ellipsis) when longer; all of it with ``n=None``."""
    return text if n is None or len(text) <= n else text[: n - 1] + "…"


def committee_line(ax, vertical: bool = False) -> None:
    """The IDSIA committee's test accuracy as a dashed line on a GTSRB accuracy axis (%)."""
    line = ax.axvline if vertical else ax.axhline
    line(IDSIA_COMMITTEE_ACC, color="tab:red", ls="--", lw=1, label=f"IDSIA committee, {IDSIA_COMMITTEE_ACC}% (test)")


def confusion_figure(report: Report, title: str = "") -> Figure:
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
    ax.set_yticks(range(len(keep)), [f"{k} {cut(report.names[k], 22)}" for k in keep], fontsize=6)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(
        title
        or f"{report.num_images} images: accuracy {100 * report.accuracy:.2f}%, macro F1 {100 * report.f1_macro:.2f}%",
        fontsize=9,
    )
    return fig


def _caption(true: str, pred: str, confidence: float) -> str:
    """Whole class names, wrapped: a cut name can hide which of two similar signs was meant."""
    lines = textwrap.wrap(f"true: {true}", CAPTION_CHARS, subsequent_indent="  ")
    lines += textwrap.wrap(f"pred: {pred} ({confidence:.2f})", CAPTION_CHARS, subsequent_indent="  ")
    return "\n".join(lines)


def errors_figure(report: Report, title: str = "") -> Figure:
    """Gallery of the most confident errors, up to 6 a row: each image above its true and predicted class names,
    in full."""
    errors = report.errors
    cols = max(1, min(6, len(errors)))
    rows = max(1, -(-len(errors) // cols))
    captions = [_caption(report.names[e.true_id], report.names[e.pred_id], e.confidence) for e in errors]
    lines = max((c.count("\n") + 1 for c in captions), default=2)
    # Each cell: the image (1.3 in) and below it room for every caption line, so captions never meet.
    fig = Figure(figsize=(1.9 * cols, (1.45 + 0.13 * lines) * rows + 0.4), layout="constrained")
    fig.suptitle(title or f"{len(errors)} most confident errors", fontsize=10)
    for k in range(rows * cols):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.axis("off")
        if k >= len(errors):
            continue
        ax.imshow(errors[k].image.permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(captions[k], fontsize=6.5, loc="left", linespacing=1.1)
    if not errors:
        fig.axes[0].text(0.5, 0.5, "no errors", ha="center", va="center", transform=fig.axes[0].transAxes)
    return fig


def robustness_figure(
    curves: Mapping[str, Mapping[str, Sequence[tuple[float, float]]]],
    units: Mapping[str, str],
    split: str,
    num_images: int,
) -> Figure:
    """``curves[distortion][model] = [(level, accuracy), ...]``: one panel per distortion, one line per model,
    titled with the split and the number of images every point was measured on."""
    names = list(curves)
    fig = Figure(figsize=(4.2 * max(1, len(names)), 3.9), layout="constrained")
    axes = fig.subplots(1, max(1, len(names)), sharey=True, squeeze=False)[0]
    for ax, dist in zip(axes, names):
        for label, points in curves[dist].items():
            xs, ys = zip(*points)
            ax.plot(xs, [100 * y for y in ys], marker="o", ms=3, label=label)
        ax.set_title(dist, fontsize=9)
        ax.set_xlabel(units.get(dist, "level"))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (%)")
    if names:
        axes[0].legend(fontsize=7)
    fig.suptitle(f"Accuracy under distortions: {split} split, {num_images} images per point", fontsize=10)
    return fig


def val_curves_figure(
    curves: Mapping[str, Sequence[tuple[float, float]]],
    x: str = "epoch",
    committee: bool = True,
    metric: str = "val/acc",
    y_min: float | None = None,
) -> Figure:
    """``curves[run] = [(x, val_acc), ...]``; ``x`` is ``epoch`` (Lightning's, from 0: drawn as epochs done) or
    ``minutes`` (wall minutes of training, validation included). ``committee``: the IDSIA committee's test
    accuracy as a dashed line (GTSRB runs only: it means nothing for other data). ``y_min``: the lowest
    accuracy shown, in %, to read the last epochs (the first ones fall below the axis); None fits every point."""
    fig = Figure(figsize=(7, 4.4), layout="constrained")
    ax = fig.add_subplot()
    shift = 1 if x == "epoch" else 0
    right, top = 0.0, IDSIA_COMMITTEE_ACC if committee else 0.0
    for label, points in curves.items():
        if points:
            xs, ys = zip(*points)
            xs, percent = [v + shift for v in xs], [100 * y for y in ys]
            right, top = max(right, *xs), max(top, *percent)
            ax.plot(xs, percent, marker="o", ms=3, label=label)
    if committee:
        committee_line(ax)
    # From 0, so that a run of one epoch (or one minute) is a point on a readable axis, not the axis' centre.
    ax.set_xlim(0, max(right, 1.0) * 1.05)
    if y_min is not None:  # the top as if the points below y_min were not there
        ax.set_ylim(y_min, min(100.0, top + 0.08 * max(top - y_min, 1.0)))
    if x == "epoch":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epochs trained" if x == "epoch" else "wall minutes (training + validation)")
    what = CURVE_NAMES.get(metric, metric)
    ax.set_ylabel(f"{what} (%)")
    runs = sum(1 for p in curves.values() if p)
    ax.set_title(
        f"{what[0].upper()}{what[1:]} of {runs} run{'s' if runs != 1 else ''}, "
        f"per {'epoch' if x == 'epoch' else 'wall minute'}"
    )
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return fig


CURVE_NAMES = {
    "val/acc": "validation accuracy",
    "val/acc_weighted": "validation accuracy at the training class mix",
    "test/acc": "test accuracy (official test set, every epoch's checkpoint)",
}
