"""Accuracy against wall minutes, scored after the run: every epoch's checkpoint of a run on one split.

A run with ``checkpoint.every_epoch=true`` keeps ``checkpoints/epochs/epoch-NN.ckpt``; its CSV log holds the wall
minutes at the end of each epoch (``time/elapsed_min``). Scoring the checkpoints afterwards gives the
time-to-accuracy curve of the test set without slowing the run itself, and without the run ever looking at
the test set: the curve is reported, never used to choose.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from stnlab.evaluation.compare import read_curve
from stnlab.evaluation.metrics import top1_accuracy
from stnlab.files import written_whole
from stnlab.training.checkpoints import CheckpointError, data_config, load_module, load_split

EPOCH = re.compile(r"epoch-(\d+)\.ckpt$")


@dataclass(frozen=True)
class Point:
    epoch: int  # epochs trained (1 after the first)
    minutes: float | None  # wall minutes since fit started, at the end of that epoch (validation included)
    accuracy: float


def epoch_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(epochs trained, file) of ``checkpoints/epochs/epoch-NN.ckpt``, in order."""
    folder = run_dir / "checkpoints" / "epochs"
    found = sorted((int(m.group(1)) + 1, p) for p in folder.glob("epoch-*.ckpt") if (m := EPOCH.search(p.name)))
    if not found:
        raise CheckpointError(
            f"{folder} holds no epoch checkpoints; train with checkpoint.every_epoch=true for a curve"
        )
    return found


def score_epochs(
    run_dir: Path,
    split: str = "test",
    data: dict | None = None,
    batch_size: int = 1000,
    device: torch.device | str = "cpu",
) -> list[Point]:
    """Every epoch checkpoint of ``run_dir`` scored on ``split`` of the run's own data."""
    checkpoints = epoch_checkpoints(run_dir)
    # Epochs trained -> wall minutes at the end of that epoch, from the run's CSV log.
    minutes = {int(epoch) + 1: m for epoch, m in read_curve(run_dir, metric="time/elapsed_min")}
    points, images = [], None
    for epoch, path in checkpoints:
        module = load_module(path, device)
        if images is None:  # every epoch's checkpoint holds the same data config
            images = load_split(data_config(module.cfg, data), split)
        points.append(
            Point(
                epoch,
                minutes.get(epoch),
                top1_accuracy(module, images.images, images.labels, batch_size, device),
            )
        )
    return points


def write_curve(points: list[Point], path: Path, split: str) -> Path:
    """``epoch, time/elapsed_min, <split>/acc`` rows (``compare.py curve=<split>/acc`` draws them), written whole."""
    with written_whole(path) as part, part.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "time/elapsed_min", f"{split}/acc"])
        for p in points:
            writer.writerow([p.epoch - 1, "" if p.minutes is None else f"{p.minutes:.4f}", f"{p.accuracy:.6f}"])
    return path
