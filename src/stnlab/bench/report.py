"""The benchmark's markdown report."""

from __future__ import annotations

from stnlab.bench.measure import EpochResult, ModelResult
from stnlab.markdown import table


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _count(n: int | None) -> str:
    return "-" if n is None else str(n)


def model_table(results: list[ModelResult]) -> list[str]:
    columns = ["model", "px", "params", "GFLOP/img (train step)", "train img/s Lightning", "train img/s plain"]
    columns += ["Lightning / plain", "data wait Lightning", "data wait plain", "ops/step Lightning", "ops/step plain"]
    columns += ["infer img/s", "peak MiB train", "peak MiB infer"]
    rows = [
        [r.model, r.image_size, f"{r.params / 1e6:.2f}M", f"{r.gflops_per_image:.2f}"]
        + [f"{r.median('lightning', 'img_per_s'):.1f}", f"{r.median('plain', 'img_per_s'):.1f}", f"{r.ratio:.3f}"]
        + [_pct(r.median("lightning", "data_share")), _pct(r.median("plain", "data_share"))]
        + [_count(r.ops("lightning")), _count(r.ops("plain"))]
        + [f"{r.infer_img_per_s:.1f}", f"{r.train_peak_mb:.0f}", f"{r.infer_peak_mb:.0f}"]
        for r in results
    ]
    return table(columns, rows, align="l" + "r" * 13)


def repetitions(results: list[ModelResult]) -> list[str]:
    """Every repetition's training img/s, in the order they ran: the spread behind the medians."""
    lines = []
    for r in results:
        pairs = ", ".join(f"{lt.img_per_s:.1f}/{pt.img_per_s:.1f}" for lt, pt in zip(r.lightning, r.plain))
        lines.append(f"- {r.model} at {r.image_size}px, Lightning/plain img/s per repetition: {pairs}")
    return lines


def epoch_table(results: list[EpochResult]) -> list[str]:
    columns = ["model", "px", "batch", "images/epoch", "variant", "epoch s (each)", "img/s (best epoch)", "TFLOP/s"]
    rows = [
        [r.model, r.image_size, r.batch_size, r.images, r.variant, ", ".join(f"{s:.2f}" for s in r.seconds)]
        + [f"{r.images / min(r.seconds):.0f}", f"{r.tflops:.1f}", _pct(r.peak_fraction)]
        for r in results
    ]
    return table([*columns, "of bf16 peak"], rows, align="lrrrllrrr")


def render(
    header: list[str],
    models: list[ModelResult],
    epochs: list[EpochResult],
    inference: list[list[str]],
    errors: list[str],
) -> str:
    """The report: ``header``, then the tables (``inference``: the rows of the CPU inference table, if measured)."""
    out = list(header)
    if models:
        out += ["", "## Training and inference throughput", ""] + model_table(models) + [""] + repetitions(models)
    if epochs:
        out += ["", "## Full training epochs (Trainer.fit, as a run; validation off)", ""] + epoch_table(epochs)
    for rows in inference:
        out += ["", "## Inference on the CPU: PyTorch eager and onnxruntime", ""] + rows
    if errors:
        out += ["", "## Failed measurements", ""] + list(errors)
    return "\n".join(out) + "\n"
