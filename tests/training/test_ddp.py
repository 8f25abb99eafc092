"""trainer=ddp_cpu: two gloo processes agree with one process on the same data, and log once."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest

from conftest import ROOT, compose, with_src
from gtsrb_fixture import make_archives
from stnlab.training.run import train

# The tiny mirror's training split holds 24 images (3 classes x 2 tracks x 4 frames): one step of
# 24 in one process is the same update as one step of 12 on each of two processes (DDP averages
# the gradients), whatever the order the samplers draw: the runs must agree to rounding.
FULL_BATCH = 24


class SampleCounter(pl.Callback):
    """Writes, per rank and epoch, how many training images it saw and the sum of their pixels."""

    def __init__(self, out_dir: str):
        self.out_dir = Path(out_dir)
        self.count = self.pixels = 0

    def on_train_epoch_start(self, trainer, pl_module):
        self.count = self.pixels = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.count += len(batch[1])
        self.pixels += int(batch[0].long().sum())

    def on_train_epoch_end(self, trainer, pl_module):
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"rank{trainer.global_rank}-epoch{trainer.current_epoch}.json"
        path.write_text(json.dumps({"count": self.count, "pixels": self.pixels, "world": trainer.world_size}))


def _seen(folder: Path, epoch: int) -> tuple[int, int, int]:
    """(images, pixel sum, files) seen in ``epoch`` summed over ranks."""
    files = sorted(folder.glob(f"rank*-epoch{epoch}.json"))
    rows = [json.loads(f.read_text()) for f in files]
    return sum(r["count"] for r in rows), sum(r["pixels"] for r in rows), len(files)


def _epoch_losses(run: Path) -> list[float]:
    with open(run / "csv" / "metrics.csv") as f:
        return [float(r["train/loss_epoch"]) for r in csv.DictReader(f) if r.get("train/loss_epoch")]


def _overrides(tiny_overrides, tmp_path, name: str, batch: int) -> list[str]:
    return [o for o in tiny_overrides if not o.startswith(("run_dir=", "data.batch_size="))] + [
        f"run_dir={tmp_path / name}",
        f"data.batch_size={batch}",
        "model=no_st",
        "trainer.max_epochs=2",
        "callbacks.test_report=null",
        f"+callbacks.count={{_target_: test_ddp.SampleCounter, out_dir: {tmp_path / name / 'seen'}}}",
    ]


def test_presets_compose():
    assert compose(["trainer=ddp_cpu"]).trainer.strategy == "ddp_spawn"
    gpu = compose(["trainer=gpu"]).trainer
    assert (gpu.accelerator, gpu.precision, gpu.benchmark) == ("gpu", "bf16-mixed", True)
    ddp = compose(["trainer=ddp"]).trainer
    assert (ddp.strategy, ddp.precision) == ("ddp", "bf16-mixed")


@pytest.mark.e2e
def test_ddp_cpu_agrees_with_one_process_and_logs_once(tiny_overrides, tmp_path):
    """Through stnlab.training.run.train in this process (as sweeps call it): ddp_spawn starts the two workers."""
    single = train(compose(_overrides(tiny_overrides, tmp_path, "single", FULL_BATCH)))
    ddp = train(compose(_overrides(tiny_overrides, tmp_path, "ddp", FULL_BATCH // 2) + ["trainer=ddp_cpu"]))

    for epoch in (0, 1):  # every training image once per epoch, split between the ranks
        n, pixels, files = _seen(tmp_path / "single" / "seen", epoch)
        assert (n, files) == (FULL_BATCH, 1)
        assert _seen(tmp_path / "ddp" / "seen", epoch) == (n, pixels, 2)
    # Synchronised metrics: torchmetrics accuracies and sync_dist losses over both ranks' shards.
    for key in ("val/acc_best", "test/acc", "test/loss"):
        assert ddp[key] == pytest.approx(single[key], abs=1e-4), key
    assert _epoch_losses(tmp_path / "ddp") == pytest.approx(_epoch_losses(tmp_path / "single"), abs=1e-4)
    assert ddp["perf/train_img_per_s"] > 0 and Path(ddp["best_checkpoint"]).is_file()
    # Rank 0 alone writes: one W&B run, one checkpoint folder, one metrics.json.
    run = tmp_path / "ddp"
    assert len(list(run.glob("wandb/offline-run-*"))) == 1
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best-01.ckpt", "last.ckpt"]
    assert json.loads((run / "metrics.json").read_text())["val/acc_best"] == ddp["val/acc_best"]
    assert sorted(p for p in tmp_path.rglob("checkpoints") if p.is_dir()) == [
        run / "checkpoints",
        tmp_path / "single" / "checkpoints",
    ]


@pytest.mark.slow
def test_ddp_cpu_from_the_command_line_writes_one_hydra_run(tmp_path):
    """``src/train.py trainer=ddp_cpu``: one Hydra run directory, W&B run and metrics.json (fit only: no test labels)."""
    mirror = make_archives(tmp_path / "mirror", with_gt=False)
    env = dict(
        os.environ,
        WANDB_MODE="offline",
        PYTHONPATH=with_src(os.pathsep.join([str(ROOT / "tests"), str(Path(__file__).parent)])),
    )
    args = [
        f"data.mirror={mirror}",
        f"data.root={tmp_path / 'data'}",
        "data.image_size=32",
        f"data.batch_size={FULL_BATCH // 2}",
        "model=no_st",
        "trainer=ddp_cpu",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "callbacks.test_report=null",
        f"+callbacks.count={{_target_: test_ddp.SampleCounter, out_dir: {tmp_path / 'seen'}}}",
    ]
    res = subprocess.run(
        [sys.executable, str(ROOT / "src" / "train.py"), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    (run,) = [p for p in (tmp_path / "outputs" / "runs").glob("*/*") if p.is_dir()]
    assert len(list(run.glob("wandb/offline-run-*"))) == 1
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["val/acc_best"] <= 1 and metrics["perf/train_img_per_s"] > 0
    assert _seen(tmp_path / "seen", 0)[0::2] == (FULL_BATCH, 2)
