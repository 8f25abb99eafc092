"""The training app through Hydra's compose API, on the tiny archives."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import CONF, compose, run_script, tiny_run_overrides
from gtsrb_fixture import make_archives
from stnlab import committee_delta
from stnlab.errors import ConfigError
from stnlab.tracking.runfile import read_run
from stnlab.training.callbacks import shorter_runs
from stnlab.training.run import summary_line, train

PRESETS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS)
def test_fast_dev_run_each_preset(preset, tiny_overrides, tmp_path):
    metrics = train(compose(tiny_overrides + [f"model={preset}", "trainer.fast_dev_run=true"]))
    assert "val/acc_best" in metrics and 0.0 <= metrics["val/acc_best"] <= 1.0
    assert "test/acc" in metrics  # the tiny mirror has test labels


def test_compact_two_st_fits_tiny_data_with_one_cycle(tiny_overrides, tmp_path):
    """A short fit of the compact network with both STs, one-cycle and jitter: the loss falls and each
    ST has left the identity; elapsed wall time is logged per epoch."""
    import csv

    import torch

    from stnlab.checkpoints import load_module

    metrics = train(
        compose(
            tiny_overrides
            + [
                "model=compact_two_st",
                "scheduler=onecycle",
                "augment=jitter",
                "optim=adam",
                "optim.lr=0.01",
                "trainer.max_epochs=6",
                "seed=1",
            ]
        )
    )
    rows = list(csv.DictReader(open(tmp_path / "run" / "csv" / "metrics.csv")))
    losses = [float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")]
    elapsed = [float(r["time/elapsed_min"]) for r in rows if r.get("time/elapsed_min")]
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert len(elapsed) == 6 and elapsed == sorted(elapsed) and elapsed[0] > 0
    module = load_module(metrics["best_checkpoint"])
    identity = module.net.transformers["input"].transform.identity()
    for name, st in module.net.transformers.items():
        assert not torch.allclose(st.regressor.bias, identity, atol=1e-4) or st.regressor.weight.abs().sum() > 0, name


def test_short_run_logs_to_offline_wandb_and_tests_best_checkpoint(tiny_overrides, tmp_path):
    metrics = train(compose(tiny_overrides + ["model=conv_st", "trainer.max_epochs=2", "seed=3"]))
    run = tmp_path / "run"
    assert Path(metrics["best_checkpoint"]).is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    assert json.loads((run / "metrics.json").read_text())["val/acc_best"] == metrics["val/acc_best"]
    csv_text = (run / "csv" / "metrics.csv").read_text()
    assert "train/loss_step" in csv_text and "val/acc" in csv_text
    (run_dir,) = run.glob("wandb/offline-run-*")
    record = read_run(run_dir)  # what `wandb sync` would upload
    assert record.name == "custom-conv_st-affine-gtsrb32-s3" and "variant:conv_st" in record.tags
    assert record.config["model.name"] == "conv_st" and record.config["optim.lr"] == 0.01
    assert len(record.metric("train/loss_step")) == 6 and len(record.metric("val/acc")) == 2
    # 12 test images are not the official 12,630: no delta to the committee is claimed.
    assert metrics["data/test_images"] == 12 and "baseline/delta_vs_idsia" not in record.summary
    assert record.summary["val/acc_best"] == pytest.approx(metrics["val/acc_best"])


def test_invalid_lr_is_rejected_before_any_work(tiny_overrides, tmp_path):
    with pytest.raises(ConfigError, match="optim.lr=-0.1 must be positive"):
        train(compose(tiny_overrides + ["optim.lr=-0.1"]))
    assert not (tmp_path / "data").exists()


def _cli(*args: str, cwd: Path, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    return run_script("train.py", *args, cwd=cwd, env={"WANDB_MODE": "offline", **(env_extra or {})})


def test_cli_unknown_preset_lists_the_presets(tmp_path):
    res = _cli("model=four_st", cwd=tmp_path)
    assert res.returncode != 0
    assert "Could not find 'model/four_st'" in res.stderr and "two_st" in res.stderr


def test_cli_missing_data_is_one_clear_line(tmp_path):
    res = _cli(
        f"data.root={tmp_path / 'd'}", f"data.mirror={tmp_path / 'nowhere'}", "trainer.fast_dev_run=true", cwd=tmp_path
    )
    assert res.returncode == 2, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("stnlab: error:") and "GTSRB_MIRROR" in last
    assert "Traceback" not in res.stderr


def test_a_failed_run_closes_its_wandb_run(tiny_overrides):
    # Otherwise Lightning's WandbLogger adopts the dangling run in the next train() of the process.
    import wandb

    from stnlab.training.module import NonFiniteLossError

    with pytest.raises(NonFiniteLossError):
        train(compose(tiny_overrides + ["model=no_st", "optim.lr=1e30", "trainer.max_epochs=3"]))
    assert wandb.run is None


def test_ema_run_tests_the_averaged_weights_it_validated(tiny_overrides, tmp_path):
    """callbacks=[default,ema]: checkpoints hold the averaged weights, and the test stage must score those (not the raw
    weights of the best epoch, which Lightning's WeightAveraging would load back)."""
    import torch
    import torch.nn.functional as F

    from stnlab.data.datamodule import GTSRBDataModule
    from stnlab.training.module import build_module

    overrides = tiny_overrides + [
        "model=compact_no_st",
        "callbacks=[default,ema]",
        "callbacks.ema.decay=0.9",
        "trainer.max_epochs=3",
        "optim=adam",
        "optim.lr=0.01",
        "seed=2",
    ]
    metrics = train(compose(overrides))
    ckpt = torch.load(metrics["best_checkpoint"], map_location="cpu", weights_only=False)
    assert "current_model_state" in ckpt  # the raw weights are there too, and differ
    module = build_module(ckpt["hyper_parameters"]["cfg"])
    module.load_state_dict(ckpt["state_dict"])
    module.eval()
    cfg = ckpt["hyper_parameters"]["cfg"]["data"]
    dm = GTSRBDataModule(**{k: v for k, v in cfg.items() if k != "_target_"})
    dm.setup("test")
    with torch.no_grad():
        loss = F.cross_entropy(module(dm.test.images), dm.test.labels).item()
    assert abs(loss - metrics["test/loss"]) < 1e-4


def test_val_acc_weighted_is_validation_accuracy_weighted_by_training_class_frequencies(tmp_path):
    """val/acc_weighted of the last epoch, recomputed by hand from the checkpoint's predictions on the validation
    split: sum_c p_c acc_c / sum_c p_c with p_c the share of class c among all training images (classes of 2, 3
    and 6 tracks here, so the weights are not uniform)."""
    import torch

    from stnlab.data.datamodule import GTSRBDataModule
    from stnlab.training.module import build_module

    mirror = make_archives(tmp_path / "uneven", tracks=[2, 3, 6])
    overrides = tiny_run_overrides(mirror, tmp_path / "data", tmp_path / "run") + [
        "model=compact_no_st",
        "trainer.max_epochs=2",
        "optim=adam",
        "optim.lr=0.003",
    ]
    metrics = train(compose(overrides + ["data.val_tracks_per_class=1", "data.balance=0.0"]))
    ckpt = torch.load(Path(metrics["best_checkpoint"]).with_name("last.ckpt"), map_location="cpu", weights_only=False)
    cfg = ckpt["hyper_parameters"]["cfg"]
    module = build_module(cfg)
    module.load_state_dict(ckpt["state_dict"])
    module.eval()
    dm = GTSRBDataModule(**{k: v for k, v in cfg["data"].items() if k != "_target_"})
    dm.setup("fit")
    with torch.no_grad():
        predicted = module(dm.val.images).argmax(1)
    labels_all = torch.cat([dm.train.labels, dm.val.labels])
    assert torch.bincount(labels_all).tolist() == [8, 12, 24]
    expected_num, expected_den = 0.0, 0.0
    for c in dm.val.labels.unique().tolist():
        p_c = float((labels_all == c).sum()) / len(labels_all)
        of_c = dm.val.labels == c
        acc_c = float((predicted[of_c] == c).float().mean())
        expected_num, expected_den = expected_num + p_c * acc_c, expected_den + p_c
    assert metrics["val/acc_weighted"] == pytest.approx(expected_num / expected_den, abs=1e-6)
    assert metrics["val/acc"] == pytest.approx(float((predicted == dm.val.labels).float().mean()), abs=1e-6)


def test_a_run_without_validation_checkpoints_its_last_epoch_and_says_so(tiny_overrides, tmp_path, caplog):
    """A refit on every training image (data.val_tracks_per_class=0) has nothing to select on: the last epoch is the
    checkpoint the test scores, and no validation metric is monitored. Every epoch's weights can be kept beside it
    (checkpoint.every_epoch, for a time-to-accuracy curve) without the two checkpoint callbacks colliding."""
    import logging

    caplog.set_level(logging.INFO)
    overrides = tiny_overrides + ["model=compact_no_st", "trainer.max_epochs=3", "data.val_tracks_per_class=0"]
    metrics = train(compose(overrides + ["checkpoint.every_epoch=true"]))
    ckpts = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("*.ckpt"))
    assert ckpts == ["epoch-02.ckpt", "last.ckpt"]
    epochs = sorted(p.name for p in (tmp_path / "run" / "checkpoints" / "epochs").glob("*.ckpt"))
    assert epochs == ["epoch-00.ckpt", "epoch-01.ckpt", "epoch-02.ckpt"]
    assert metrics["best_checkpoint"].endswith("epoch-02.ckpt") and "test/acc" in metrics
    assert not any(k.startswith("val/") for k in metrics) and metrics["data/val_images"] == 0
    assert "no validation split: checkpointing the last epoch" in caplog.text
    assert metrics["data/train_images"] == 36  # every image of the tiny archive (3 classes x 3 tracks x 4 frames)


def test_test_false_leaves_the_test_set_unseen(tiny_overrides, capsys):
    metrics = train(compose(tiny_overrides + ["model=compact_no_st", "trainer.max_epochs=1", "test=false"]))
    assert not any(k.startswith("test/") for k in metrics) and "val/acc_weighted" in metrics
    line = capsys.readouterr().out
    assert "test/acc - (test=false)" in line and "(val: no test result)" in line


def test_checkpoint_monitor_picks_the_weighted_metric_and_a_typo_is_one_line(tiny_overrides):
    metrics = train(
        compose(tiny_overrides + ["model=compact_no_st", "trainer.max_epochs=2", "checkpoint.monitor=val/acc_weighted"])
    )
    assert Path(metrics["best_checkpoint"]).name.startswith("best-")
    with pytest.raises(ConfigError, match="checkpoint.monitor=val/acc_weigted is not logged"):
        train(compose(tiny_overrides + ["model=compact_no_st", "checkpoint.monitor=val/acc_weigted"]))


def test_summary_line_claims_a_committee_delta_only_on_the_whole_official_test_set(tmp_path):
    base = {"val/acc_best": 0.99, "time/fit_s": 60.0}
    whole = summary_line(tmp_path, {**base, "test/acc": 0.9890, "data/test_images": 12630}, True, True)
    assert "Δ vs 99.46 -0.56 pts (test)" in whole
    smoke = summary_line(tmp_path, {**base, "test/acc": 0.95, "data/test_images": 320}, True, True)
    assert "no Δ vs 99.46 (test on 320 of 12630 images)" in smoke and "pts" not in smoke
    no_test = summary_line(tmp_path, base, True, True, test=False)
    assert "test/acc - (test=false)" in no_test and "Δ vs 99.46 -0.46 pts (val: no test result)" in no_test
    assert "no Δ vs 99.46 (not GTSRB)" in summary_line(tmp_path, {**base, "test/acc": 0.5}, False, True)
    # Runs written before the count existed are taken as tested on the whole set.
    assert committee_delta({"test/acc": 0.99}) == (pytest.approx(-0.46), "test")


def test_the_speed_line_suggests_the_cpu_recipe_only_outside_it():
    assert "experiment=compact (~15 min" in shorter_runs("custom") and "debug=limit" in shorter_runs("custom")
    inside = shorter_runs("compact")
    assert "experiment=compact" not in inside and inside == "shorter runs: trainer.max_epochs=N, or debug=limit"
