"""``evaluate.py``'s work: one checkpoint on one split -> report files (and a W&B evaluation run on request)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from stnlab.data.gtsrb import Split
from stnlab.errors import ConfigError
from stnlab.evaluation.files import write_report
from stnlab.evaluation.metrics import Report, evaluate, group_interval
from stnlab.evaluation.wandb_media import report_media
from stnlab.run_dirs import run_dir_of_checkpoint
from stnlab.tracking.run_identity import logged_config, run_name, run_tags
from stnlab.tracking.wandb_logger import open_run
from stnlab.training.checkpoints import (
    config_of,
    data_config,
    load_module,
    load_split,
    pick_device,
    resolve_checkpoint,
)
from stnlab.training.module import STNModule

log = logging.getLogger(__name__)
SOURCE = "evaluate.py"  # the "source" of the reports this module writes (the test stage's is "test stage")


def start_wandb_run(
    cfg: dict,
    out_dir: Path,
    job_type: str,
    name: str,
    config: dict[str, Any],
    mode: str | None = None,
    group: str | None = None,
    tags: list[str] | None = None,
):
    """The W&B run of an evaluation of the training run ``cfg`` describes: its project, and unless given, its
    group (the training run's name) and tags, plus ``job_type``. ``None`` when disabled."""
    wb = cfg.get("wandb") or {}
    return open_run(
        {**wb, "mode": None},
        out_dir,
        name,
        job_type,
        config,
        mode,
        group=group or wb.get("group") or run_name(cfg),
        tags=(tags if tags is not None else run_tags(cfg)) + [job_type],
    )


def load_scored(ckpt: Path, split: str, data: dict[str, Any] | None, device: torch.device) -> tuple[STNModule, Split]:
    """The checkpoint's ``STNModule`` on ``device`` and ``split`` of its own data (``data`` overrides keys of the
    data config it was trained with): what evaluate.py and robustness.py score."""
    module = load_module(ckpt, device)
    return module, load_split(data_config(module.cfg, data), split)


def evaluate_checkpoint(
    ckpt: str | Path,
    split: str = "test",
    data: dict[str, Any] | None = None,
    out_dir: str | Path | None = None,
    wandb_mode: str | None = "disabled",
    max_errors: int = 32,
    batch_size: int = 500,
    device: str = "auto",
    baseline: str | Path | None = None,
) -> tuple[Report, dict[str, Path]]:
    """Evaluate ``ckpt`` (a file, or a run folder: its chosen checkpoint) on ``split`` of its own data (``data``
    overrides it); write to ``out_dir`` (default ``<run_dir>/eval/<checkpoint name>``, beside the test stage's
    report in ``<run_dir>/eval``, which is never overwritten). With ``baseline``, a second checkpoint is scored on
    the same images, each prepared as its own run did, and the report gets the paired difference. Returns the
    report and the written paths."""
    dev = pick_device(device)
    ckpt = resolve_checkpoint(ckpt)
    out = Path(out_dir) if out_dir else run_dir_of_checkpoint(ckpt) / "eval" / ckpt.stem
    refuse_test_stage_report(out, split)
    module, images_split = load_scored(ckpt, split, data, dev)
    info = config_of(module)
    report = evaluate(
        module,
        images_split.images,
        images_split.labels,
        info.num_classes,
        batch_size=batch_size,
        max_errors=max_errors,
        device=dev,
        groups=images_split.tracks,
        names=info.class_names,
    )
    if baseline is not None:
        report.comparison = compare_on_same_images(report, images_split, baseline, split, data, batch_size, dev)
    meta = {"source": SOURCE, "checkpoint": str(ckpt.resolve()), "run": run_name(module.cfg)}
    paths = write_report(report, out, split, meta)
    if wandb_mode != "disabled":
        run = start_wandb_run(
            module.cfg,
            out,
            "eval",
            f"{run_name(module.cfg)}-eval-{split}",
            {**logged_config(module.cfg), "eval.checkpoint": str(ckpt), "eval.split": split},
            wandb_mode,
        )
        if run is not None:
            run.log(report_media(report, split, paths))
            summary = {f"{split}/acc": report.accuracy, f"{split}/f1_macro": report.f1_macro}
            if report.interval:
                summary.update({f"{split}/acc_low": report.interval.low, f"{split}/acc_high": report.interval.high})
            if report.comparison:
                summary[f"{split}/acc_minus_baseline"] = report.comparison["difference"]["estimate"]
            run.summary.update(summary)
            run.finish()
    return report, paths


def refuse_test_stage_report(out: Path, split: str) -> None:
    """A report in ``out`` that evaluate.py did not write (the training run's test stage wrote
    ``<run_dir>/eval/test_report.json``) is kept: one line, before any work."""
    existing = out / f"{split}_report.json"
    if not existing.is_file():
        return
    try:
        source = json.loads(existing.read_text()).get("source")
    except (OSError, ValueError, AttributeError):
        source = None
    if source != SOURCE:
        raise ConfigError(
            f"{existing} is the training run's own {split} report; evaluate.py does not overwrite it: "
            "pass another out= (by default it writes to <run dir>/eval/<checkpoint name>/)"
        )


def compare_on_same_images(
    report: Report,
    images_split: Split,
    base_ckpt: str | Path,
    split: str,
    data: dict[str, Any] | None,
    batch_size: int,
    device: torch.device,
) -> dict[str, Any]:
    """The baseline checkpoint's accuracy on the same images as ``report``, and the paired difference over
    tracks. Each network sees the images as its own run prepared them (its size, ROI crop, ...), since a network
    fed another run's preprocessing scores below its own figure; the two splits must hold the same images in the
    same order, which their labels and tracks check."""
    base_ckpt = resolve_checkpoint(base_ckpt)  # a run folder: its chosen checkpoint, recorded by name below
    base_module, base_split = load_scored(base_ckpt, split, data, device)
    if not (
        torch.equal(base_split.labels, images_split.labels) and torch.equal(base_split.tracks, images_split.tracks)
    ):
        raise ConfigError(
            f"baseline {base_ckpt} has another {split} split ({len(base_split)} images, "
            f"the checkpoint {len(images_split)}); compare checkpoints trained with the same "
            "data.val_tracks_per_class and data.split_seed"
        )
    base = evaluate(
        base_module,
        base_split.images,
        base_split.labels,
        base_module.num_classes,
        batch_size=batch_size,
        max_errors=0,
        device=device,
    )
    diff = group_interval(report.correct, images_split.tracks, baseline=base.correct)
    return {
        "checkpoint": str(base_ckpt.resolve()),
        "run": run_name(base_module.cfg),
        "accuracy": base.accuracy,
        "difference": diff.as_dict(),
    }
