"""A tiny resumable run (conv_st of width 8, 3 steps per epoch), what its CSV logs say, faults injected into it
(``_target_: tiny_runs.CrashAt`` in a subprocess: ``train_cli`` puts tests/ on its PYTHONPATH), and train.py run as a user runs it."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
from pathlib import Path

import lightning.pytorch as pl

from conftest import ROOT, run_script


def tiny_run(mirror: Path, data_root: Path, run_dir: Path | None, *extra: str) -> list[str]:
    """A 2-epoch run of a conv_st network of width 8 with jitter, a last.ckpt every 2 steps (3 steps per epoch)."""
    return [
        f"data.mirror={mirror}",
        f"data.root={data_root}",
        *([f"run_dir={run_dir}"] if run_dir else []),
        "data.image_size=16",
        "data.batch_size=8",
        "data.eval_batch_size=16",
        "model=conv_st",
        "model.backbone.widths=[8,8,8]",
        "model.backbone.fc=16",
        "model.transformers.input.locnet.widths=[8,8,8]",
        "augment=jitter",
        "optim.lr=0.05",
        "seed=5",
        "trainer.max_epochs=2",
        "trainer.accelerator=cpu",
        "trainer.log_every_n_steps=1",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "trainer.num_sanity_val_steps=0",
        "checkpoint.every_n_train_steps=2",
        "wandb.mode=disabled",
        "callbacks.test_report=null",
        *extra,
    ]


def step_losses(run_dir: Path) -> dict[int, float]:
    """train/loss_step by global step from every CSV part of a run (a resumed part wins)."""
    out: dict[int, float] = {}
    for part in sorted(run_dir.glob("csv/**/metrics.csv")):  # csv/metrics.csv, then csv/resume-1/...
        for row in csv.DictReader(part.open()):
            if row.get("train/loss_step"):
                out[int(row["step"])] = float(row["train/loss_step"])
    return out


def epoch_metrics(run_dir: Path) -> dict[tuple[int, str], float]:
    out = {}
    for part in sorted(run_dir.glob("csv/**/metrics.csv")):
        for row in csv.DictReader(part.open()):
            for key in ("val/loss", "val/acc"):
                if row.get(key):
                    out[(int(row["epoch"]), key)] = float(row[key])
    return out


FINAL = ("val/acc_best", "test/acc", "test/loss")


class Crash(Exception):
    pass


class CrashAt(pl.Callback):
    """Fault injection: at the start of the batch after global step ``step``, crash (or SIGKILL the process)."""

    def __init__(self, step: int, kill: bool = False):
        self.step, self.kill = step, kill

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            if self.kill:
                os.kill(os.getpid(), signal.SIGKILL)
            raise Crash(f"injected crash after step {self.step}")


def train_cli(
    *args: str, cwd: Path, extra_env: dict | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    env = {"WANDB_MODE": "disabled", "PYTHONPATH": str(ROOT / "tests"), **(extra_env or {})}
    return run_script("train.py", *args, cwd=cwd, env=env, timeout=timeout)


class SignalAt(pl.Callback):
    """Fault injection: the process sends itself ``signum`` at the start of the batch after global step ``step``."""

    def __init__(self, step: int, signum: int):
        self.step, self.signum = step, signum

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)
