"""``robustness.py``'s work: several checkpoints x distortions x levels -> JSON table, PNG curves, W&B plots.

Output (``out_dir``; default ``<run_dir>/eval`` for one checkpoint, else
``<paths.outputs_dir>/robustness/<date>_<time>``): ``robustness_<split>.json`` =
``{"split", "num_images", "camera_distance", "distortions": {name: {"unit", "levels"}},
"models": [{"label", "checkpoint", "variant", "transform", "accuracy": {name: [acc per level]}}]}``
and ``robustness_<split>.png`` (one panel per distortion, one line per model).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from stnlab.errors import ConfigError
from stnlab.evaluation.checkpoint_report import load_scored, start_wandb_run
from stnlab.evaluation.files import writing_into
from stnlab.evaluation.plots import robustness_figure, save
from stnlab.evaluation.robustness import CAMERA_DISTANCE, DISTORTIONS, accuracy_curve
from stnlab.evaluation.wandb_media import robustness_media
from stnlab.markdown import row
from stnlab.run_dirs import run_dir_of_checkpoint
from stnlab.tracking.run_identity import run_name
from stnlab.training.checkpoints import config_of, pick_device, resolve_checkpoint

log = logging.getLogger(__name__)


def model_labels(cfgs: Sequence[dict], ckpts: Sequence[str | Path]) -> list[str]:
    """W&B-style run names (``two_st-affine-s1``), made unique with the run folder's name, then the
    checkpoint's, where they clash."""
    labels = [run_name(c) for c in cfgs]
    for part in (lambda p: run_dir_of_checkpoint(Path(p).resolve()).name, lambda p: Path(p).stem):
        labels = [f"{lb} {part(p)}" if labels.count(lb) > 1 else lb for lb, p in zip(labels, ckpts)]
    return labels


def subset(n: int, limit: int | None, seed: int = 0) -> torch.Tensor:
    """Indices of the evaluated images: all, or ``limit`` of them drawn without replacement (fixed seed)."""
    if not limit or limit >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:limit].sort().values


def run_robustness(
    ckpts: Sequence[str | Path],
    split: str = "val",
    data: dict[str, Any] | None = None,
    distortions: Sequence[str] | None = None,
    levels: dict[str, Sequence[float]] | None = None,
    limit: int | None = None,
    out_dir: str | Path | None = None,
    wandb_mode: str | None = "disabled",
    batch_size: int = 500,
    device: str = "auto",
    outputs_dir: str | Path | None = None,
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Accuracy per distortion level of every checkpoint; writes the JSON table and the PNG (into ``out_dir``, by
    default as the module says). Returns (table, paths)."""
    if not ckpts:
        raise ConfigError("no checkpoint given; pass ckpt=<run_dir>/checkpoints/best-*.ckpt (repeat for more models)")
    if out_dir is None and len(ckpts) > 1 and outputs_dir is None:
        raise ConfigError("several checkpoints and no output folder; pass out=DIR (or paths.outputs_dir=DIR)")
    names = list(distortions or DISTORTIONS)
    unknown = [n for n in names if n not in DISTORTIONS]
    if unknown:
        raise ConfigError(f"unknown distortion(s) {', '.join(unknown)}; choose from {', '.join(DISTORTIONS)}")
    chosen = {n: tuple((levels or {}).get(n) or DISTORTIONS[n].levels) for n in names}
    if "scale" in chosen and min(chosen["scale"]) <= 0:
        raise ConfigError(f"scale levels {list(chosen['scale'])} must be positive zoom factors (1 = unchanged)")
    dev = pick_device(device)
    ckpts = [resolve_checkpoint(c) for c in ckpts]  # run folders -> their chosen checkpoints
    table: dict[str, Any] = {
        "split": split,
        "camera_distance": CAMERA_DISTANCE,
        "distortions": {n: {"unit": DISTORTIONS[n].unit, "levels": list(chosen[n])} for n in names},
        "models": [],
    }
    cfgs, n_levels = [], sum(map(len, chosen.values()))
    for ckpt in ckpts:
        module, data_split = load_scored(ckpt, split, data, dev)
        cfgs.append(module.cfg)
        index = subset(len(data_split), limit)
        images, labels = data_split.images[index], data_split.labels[index]
        start = time.perf_counter()
        acc = {
            n: [a for _, a in accuracy_curve(module, images, labels, DISTORTIONS[n], chosen[n], batch_size, dev)]
            for n in names
        }
        log.info("%s: %d images x %d levels in %.1f s", ckpt, len(labels), n_levels, time.perf_counter() - start)
        table["num_images"] = len(labels)
        table["models"].append(
            {
                "checkpoint": str(Path(ckpt).resolve()),
                "variant": config_of(module).model,
                "transform": config_of(module).transform,
                "accuracy": acc,
            }
        )
        del module
    for entry, label in zip(table["models"], model_labels(cfgs, ckpts)):
        entry["label"] = label
    if out_dir:
        out = Path(out_dir)
    elif len(ckpts) == 1:
        out = run_dir_of_checkpoint(ckpts[0]) / "eval"
    else:
        out = Path(str(outputs_dir)) / "robustness" / time.strftime("%Y-%m-%d_%H-%M-%S")
    curves = curves_of(table)
    units = {n: DISTORTIONS[n].unit for n in names}
    with writing_into(out):
        paths = {"json": out / f"robustness_{split}.json"}
        paths["json"].write_text(json.dumps(table, indent=1))
        figure = robustness_figure(curves, units, split, table["num_images"])
        paths["png"] = save(figure, out / f"robustness_{split}.png")
    if wandb_mode != "disabled":
        _log_wandb(table, cfgs, curves, units, out, wandb_mode, paths["png"])
    return table, paths


def curves_of(table: dict[str, Any]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """The JSON table as ``curves[distortion][model label] = [(level, accuracy), ...]``."""
    return {
        n: {m["label"]: list(zip(d["levels"], m["accuracy"][n])) for m in table["models"]}
        for n, d in table["distortions"].items()
    }


def format_table(table: dict[str, Any]) -> str:
    """Markdown: one table per distortion, models as rows, levels as columns, accuracy in %."""
    blocks = []
    for n, d in table["distortions"].items():
        head = row([f"{n} ({d['unit']})", *(f"{lv:g}" for lv in d["levels"])])
        rule = "|---|" + "---:|" * len(d["levels"])
        rows = [row([m["label"], *(f"{100 * a:.2f}" for a in m["accuracy"][n])]) for m in table["models"]]
        blocks.append("\n".join([head, rule, *rows]))
    return "\n\n".join(blocks)


def _log_wandb(table, cfgs, curves, units, out: Path, mode, png: Path) -> None:
    import wandb  # heavy to import (seconds): only the code that logs to W&B loads it

    labels = [m["label"] for m in table["models"]]
    tags = sorted({f"variant:{m['variant']}" for m in table["models"]})
    run = start_wandb_run(
        cfgs[0],
        out,
        "robustness",
        f"robustness-{table['split']}-" + "+".join(labels),
        {
            "split": table["split"],
            "checkpoints": [m["checkpoint"] for m in table["models"]],
            "models": labels,
            "num_images": table["num_images"],
            "distortions": table["distortions"],
        },
        mode,
        group="robustness",
        tags=tags,
    )
    if run is None:
        return
    run.log({**robustness_media(curves, units), "robustness/curves_png": wandb.Image(str(png))})
    run.finish()
