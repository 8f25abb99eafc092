"""Resuming (stnlab.training.resume): a crashed or killed run resumed gives the same numbers as an uninterrupted one;
resuming onto other data or another network is refused; the metrics a run reports are those a sweep may name."""

from __future__ import annotations

import csv
import json
import os
import signal
import time
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from conftest import compose
from stnlab.errors import ConfigError
from stnlab.training.module import build_module
from stnlab.training.run import checkpoint_callbacks, train
from tiny_runs import FINAL, Crash, CrashAt, epoch_metrics, step_losses, tiny_run, train_cli


class Declining(pl.LightningModule):
    """A model whose monitored val/acc only falls: its best epoch is the first, its last is the last."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).square().mean()

    def validation_step(self, batch, batch_idx):
        self.log("val/acc", 1.0 - self.current_epoch / 10)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("monitor, every", [("val/acc", 0), ("val/acc", 2), (None, 0)])
def test_last_ckpt_holds_the_last_epoch_when_the_best_is_earlier(tmp_path, monitor, every):
    """Lightning 2.6 rewrites save_last's last.ckpt only where a best checkpoint is saved: resume=last would have
    gone back to the best epoch. The run's checkpoints keep last.ckpt at the last epoch, the best one beside it."""
    loader = DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=4)
    trainer = pl.Trainer(
        max_epochs=3,
        callbacks=checkpoint_callbacks(str(tmp_path), monitor, every),
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **({} if monitor else {"limit_val_batches": 0}),
    )
    trainer.fit(Declining(), loader, loader if monitor else None)
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == (["best-00.ckpt", "last.ckpt"] if monitor else ["epoch-02.ckpt", "last.ckpt"])
    last = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (2, 6)
    if monitor:
        assert torch.load(tmp_path / "best-00.ckpt", weights_only=True)["epoch"] == 0


@pytest.mark.e2e
def test_same_seed_same_metrics_on_cpu(reference, gtsrb_mirror, data_root, tmp_path):
    metrics, run_a = reference
    again = train(compose(tiny_run(gtsrb_mirror, data_root, tmp_path / "run")))
    assert {k: again[k] for k in FINAL} == {k: metrics[k] for k in FINAL}
    assert step_losses(tmp_path / "run") == step_losses(run_a) and len(step_losses(run_a)) == 6
    assert epoch_metrics(tmp_path / "run") == epoch_metrics(run_a)


@pytest.mark.e2e
def test_crash_mid_epoch_then_resume_last_gives_the_same_run(reference, gtsrb_mirror, data_root, tmp_path):
    metrics, run_a = reference
    run_b = tmp_path / "run"
    cfg = tiny_run(gtsrb_mirror, data_root, run_b)
    with pytest.raises(Crash):  # after step 4 = the first of 3 batches of epoch 2, with a last.ckpt at step 4
        train(compose(cfg), extra_callbacks=[CrashAt(4)])
    assert not (run_b / "metrics.json").exists()
    resumed = train(compose(cfg + ["resume=last"]))
    # Same weights, data order and jitter draws after the resume: every number matches the uninterrupted run.
    assert {k: resumed[k] for k in FINAL} == {k: metrics[k] for k in FINAL}
    assert step_losses(run_b) == step_losses(run_a)
    assert epoch_metrics(run_b) == epoch_metrics(run_a)
    # The resumed part wrote beside the first, in the same run directory; nothing of the first part was lost.
    assert (run_b / "csv" / "metrics.csv").is_file() and (run_b / "csv" / "resume-1" / "metrics.csv").is_file()
    # ...and it started mid-epoch, from the step-4 checkpoint (not from the end of epoch 1): 2 steps left.
    resumed_steps = [
        int(r["step"])
        for r in csv.DictReader((run_b / "csv" / "resume-1" / "metrics.csv").open())
        if r.get("train/loss_step")
    ]
    assert resumed_steps == sorted(step_losses(run_a))[-2:]
    assert json.loads((run_b / "metrics.json").read_text())["test/acc"] == metrics["test/acc"]
    assert resumed["perf/train_img_per_s"] > 1  # timed from the resume, not from the epoch start it never saw
    # Resuming with another network is refused before any work, naming the difference and the fix.
    with pytest.raises(
        ConfigError,
        match=r"another network \(model.backbone.fc: 16 in the checkpoint, 32 now\).*"
        r"resume with the run's own overrides",
    ):
        train(compose(cfg + ["resume=last", "model.backbone.fc=32"]))


def test_val_acc_best_survives_a_resume():
    """torchmetrics states are not in the state_dict: without the module's checkpoint hook a resumed run
    would report the best of the epochs after the resume only."""
    cfg = compose(["model=no_st", "data.image_size=16", "model.backbone.widths=[4,4,4]", "model.backbone.fc=8"])
    from omegaconf import OmegaConf

    resolved = OmegaConf.to_container(cfg, resolve=True)
    before = build_module(resolved)
    before.val_acc_best.update(torch.tensor(0.75))
    checkpoint: dict = {}
    before.on_save_checkpoint(checkpoint)
    after = build_module(resolved)
    after.on_load_checkpoint(checkpoint)
    after.val_acc_best.update(torch.tensor(0.5))  # a worse epoch after the resume
    assert float(after.val_acc_best.compute()) == 0.75


def test_resume_last_finds_the_latest_run(tmp_path, monkeypatch):
    from stnlab.run_dirs import resolve_resume

    monkeypatch.chdir(tmp_path)
    for name, age in (("2026-01-01/10-00-00-two_st", 100), ("2026-01-02/09-00-00-no_st", 10)):
        ckpt = tmp_path / "outputs" / "runs" / name / "checkpoints" / "last.ckpt"
        ckpt.parent.mkdir(parents=True)
        torch.save({"x": 1}, ckpt)
        os.utime(ckpt, (time.time() - age, time.time() - age))
    ckpt, run_dir = resolve_resume("last")
    assert run_dir == Path("outputs/runs/2026-01-02/09-00-00-no_st") and ckpt == run_dir / "checkpoints" / "last.ckpt"
    # A run directory works too, and a checkpoint file.
    assert resolve_resume("outputs/runs/2026-01-01/10-00-00-two_st")[1] == Path(
        "outputs/runs/2026-01-01/10-00-00-two_st"
    )
    assert resolve_resume(str(ckpt)) == (ckpt, run_dir)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_mid_epoch_then_cli_resume_last(reference, gtsrb_mirror, data_root, tmp_path):
    """The real thing through the CLI: SIGKILL mid-epoch, then `train.py ... resume=last` with no run_dir."""
    metrics, run_a = reference
    cfg = tiny_run(gtsrb_mirror, data_root, None)
    killed = train_cli(*cfg, "+callbacks.kill={_target_:tiny_runs.CrashAt,step:4,kill:true}", cwd=tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    (run_b,) = (tmp_path / "outputs" / "runs").glob("*/*")
    assert (run_b / "checkpoints" / "last.ckpt").is_file() and not (run_b / "metrics.json").exists()
    resumed = train_cli(*cfg, "resume=last", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert list((tmp_path / "outputs" / "runs").glob("*/*")) == [run_b]  # no second run directory
    assert (run_b / ".hydra" / "overrides.yaml").is_file() and list((run_b / ".hydra").glob("resume-*/overrides.yaml"))
    final = json.loads((run_b / "metrics.json").read_text())
    assert {k: final[k] for k in FINAL} == {k: metrics[k] for k in FINAL}
    assert step_losses(run_b) == step_losses(run_a)


@pytest.mark.parametrize(
    "override, diff",
    [
        ("data.crop_roi=true", "data.crop_roi: False in the checkpoint, True now"),
        ("data.split_seed=3", "data.split_seed: 0 in the checkpoint, 3 now"),
        ("data.val_tracks_per_class=2", "data.val_tracks_per_class: 1 in the checkpoint, 2 now"),
    ],
)
def test_resume_onto_other_data_is_refused(override, diff, reference, gtsrb_mirror, data_root, tmp_path):
    _, run_a = reference
    ckpt = run_a / "checkpoints" / "last.ckpt"
    with pytest.raises(
        ConfigError, match=f"trained on other data \\({diff}\\); its val/acc_best would not be comparable"
    ):
        train(compose(tiny_run(gtsrb_mirror, data_root, tmp_path / "run", f"resume={ckpt}", override)))
    assert not (tmp_path / "run").exists()
    # Where the data lies and how it is batched may change (another machine, another batch size).
    from omegaconf import OmegaConf

    from stnlab.training.resume import check_compatible

    moved = compose(tiny_run(tmp_path / "elsewhere", tmp_path / "root", None, "data.eval_batch_size=4"))
    check_compatible(ckpt, OmegaConf.to_container(moved, resolve=True))


def test_the_metric_names_a_sweep_may_use_are_what_a_run_reports(reference):
    """stnlab.config.schema.RUN_METRICS / VAL_EPOCH_METRICS (the sweep preflight's lists) against a real run."""
    from stnlab.config.schema import RUN_METRICS, VAL_EPOCH_METRICS

    metrics, run_a = reference
    assert set(metrics) - {"best_checkpoint"} <= set(RUN_METRICS)
    assert {"val/acc_best", "test/acc", "test/loss", "time/fit_s", "model/params"} <= set(metrics)
    columns = set(next(csv.reader((run_a / "csv" / "metrics.csv").open())))
    assert set(VAL_EPOCH_METRICS) <= columns
