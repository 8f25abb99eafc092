"""The training app through Hydra's compose API, on the tiny archives."""

from __future__ import annotations

import csv
import json
import logging
import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import CONF, ROOT, at_once, compose, run_script, tiny_run_overrides
from gtsrb_fixture import make_archives
from stnlab import committee_delta
from stnlab.errors import ConfigError, StnlabError
from stnlab.tracking.runfile import read_run
from stnlab.training.callbacks import shorter_runs
from stnlab.training.module import NonFiniteLossError, build_module
from stnlab.training.run import summary_line, train
from tiny_runs import tiny_run, train_cli

PRESETS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))


@pytest.mark.e2e
@pytest.mark.parametrize("preset", PRESETS)
def test_fast_dev_run_each_preset(preset, tiny_overrides, tmp_path):
    metrics = train(compose(tiny_overrides + [f"model={preset}", "trainer.fast_dev_run=true"]))
    assert "val/acc_best" in metrics and 0.0 <= metrics["val/acc_best"] <= 1.0
    assert "test/acc" in metrics  # the tiny mirror has test labels


@pytest.mark.e2e
def test_compact_two_st_fits_tiny_data_with_one_cycle(tiny_overrides, tmp_path):
    """A short fit of the compact network with both STs, one-cycle and jitter: the loss falls and each
    ST has left the identity; elapsed wall time is logged per epoch."""

    import torch

    from stnlab.training.checkpoints import load_module

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


@pytest.mark.e2e
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


def _cli(*args: str, cwd: Path, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    return run_script("train.py", *args, cwd=cwd, env={"WANDB_MODE": "offline", **(env_extra or {})})


@pytest.mark.e2e
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
    import torch.nn.functional as F

    from stnlab.data.datamodule import GTSRBDataModule

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

    from stnlab.data.datamodule import GTSRBDataModule

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


@pytest.mark.e2e
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


@pytest.mark.e2e
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
    assert "experiment=compact (~8 min" in shorter_runs("custom") and "debug=limit" in shorter_runs("custom")
    inside = shorter_runs("compact")
    assert "experiment=compact" not in inside and inside == "shorter runs: trainer.max_epochs=N, or debug=limit"


# --- run folders: one process each, nothing written by a refused start --------------------------------------------

FAST = ["model=no_st", "model.backbone.widths=[8,8,8]", "model.backbone.fc=16", "data.image_size=16"]


def _snapshot(folder: Path) -> list[tuple[str, int, bytes]]:
    """Every file under ``folder`` with its mtime and bytes: what "left untouched" compares."""
    return sorted(
        (str(p.relative_to(folder)), p.stat().st_mtime_ns, p.read_bytes()) for p in folder.rglob("*") if p.is_file()
    )


def _finished_run(folder: Path, model: str = "two_st") -> Path:
    """A run folder as train.py leaves it (its .hydra/ names ``model``), without training one."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(f"model:\n  name: {model}\nseed: 4\n")
    (folder / ".hydra" / "overrides.yaml").write_text(f"- model={model}\n- seed=4\n")
    (folder / "csv").mkdir()
    (folder / "csv" / "metrics.csv").write_text("epoch,val/acc\n0,0.5\n")
    (folder / "metrics.json").write_text('{"val/acc_best": 0.5}')
    (folder / "train.log").write_text("theirs\n")
    return folder


@pytest.mark.e2e
def test_a_refused_run_dir_leaves_the_run_there_exactly_as_it_was(tmp_path):
    """Hydra writes .hydra/ and its log before train() runs: the claim comes first, so a refused start changes
    nothing there and the refusal names the run's own model (not the refused command's)."""
    other = _finished_run(tmp_path / "other")
    before = _snapshot(other)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    res = run_script(
        "train.py", f"run_dir={other}", "model=no_st", "seed=9", cwd=tmp_path, env={"TMPDIR": str(scratch)}
    )
    assert res.returncode == 2, res.stderr[-2000:]
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith(f"stnlab: error: run_dir={other} already holds a run (model two_st)"), last
    assert _snapshot(other) == before
    assert not list(scratch.iterdir())  # Hydra's files of the refused start went to a scratch folder, since removed


@pytest.mark.e2e
def test_run_dir_naming_a_file_is_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    res = run_script("train.py", f"run_dir={tmp_path / 'notes.txt'}", cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert res.stderr.strip().splitlines()[-1] == (
        f"stnlab: error: the run folder {tmp_path / 'notes.txt'} is a file; pass run_dir= a new folder"
    )
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.fixture(scope="module")
def finished(gtsrb_mirror, tmp_path_factory) -> tuple[list[str], Path]:
    """A finished 2-epoch run: (its overrides less run_dir, its folder)."""
    from conftest import tiny_run_overrides

    root = tmp_path_factory.mktemp("finished")
    overrides = [
        o for o in tiny_run_overrides(gtsrb_mirror, root / "data", root / "run") if not o.startswith("run_dir")
    ]
    overrides += [*FAST, "trainer.max_epochs=2", "wandb.mode=disabled", "callbacks.test_report=null"]
    train(compose([*overrides, f"run_dir={root / 'run'}"]))
    return overrides, root / "run"


def test_a_checkpoint_continues_its_own_run_or_starts_one_in_an_empty_folder(finished, tmp_path):
    overrides, run_a = finished
    a_before = _snapshot(run_a)
    run_b = _finished_run(tmp_path / "b")
    b_before = _snapshot(run_b)
    ckpt = run_a / "checkpoints" / "last.ckpt"
    with pytest.raises(
        ConfigError, match=f"already holds a run \\(model two_st\\), and the checkpoint to resume is {run_a}'s"
    ):
        train(compose([*overrides, f"resume={ckpt}", f"run_dir={run_b}", "trainer.max_epochs=3"]))
    assert _snapshot(run_b) == b_before
    # A new, empty folder: a new run there, started from A's checkpoint; A is left as it was.
    metrics = train(compose([*overrides, f"resume={ckpt}", f"run_dir={tmp_path / 'c'}", "trainer.max_epochs=3"]))
    assert Path(metrics["best_checkpoint"]).parent == tmp_path / "c" / "checkpoints"
    assert (tmp_path / "c" / "metrics.json").is_file() and _snapshot(run_a) == a_before


@pytest.mark.e2e
def test_a_run_folder_held_by_another_process_is_refused(finished, tmp_path):
    """The lock is the kernel's: held here (as a training process holds it), resume=last from another process is
    refused, with run_dir= and without (the latest run under outputs/runs), and writes nothing."""
    import shutil

    from stnlab.run_dirs import claim_run, release_run

    overrides, run_a = finished
    run = tmp_path / "outputs" / "runs" / "2026-01-01" / "10-00-00-no_st"
    shutil.copytree(run_a, run)
    before = _snapshot(run)
    claim_run(run, run)
    try:
        for extra in ([f"run_dir={run}"], []):
            res = run_script("train.py", *overrides, "resume=last", "trainer.max_epochs=3", *extra, cwd=tmp_path)
            assert res.returncode == 2, res.stderr[-2000:]
            assert res.stderr.strip().splitlines()[-1] == (
                f"stnlab: error: run_dir={'outputs/runs/2026-01-01/10-00-00-no_st' if not extra else run} is in use: "
                "another process is training a run there; wait until it ends, then resume it again"
            )
    finally:
        release_run(run)
    assert _snapshot(run) == before


def _new_folder(default: str) -> str:
    from stnlab.run_dirs import claim_run_dir

    return claim_run_dir(default)  # what hydra.sweep.dir resolves to in each multirun


@pytest.mark.timeout(60)
@pytest.mark.parametrize("processes", [2, 4])
def test_multiruns_started_in_the_same_second_get_their_own_folders(processes, tmp_path):
    from omegaconf import OmegaConf

    assert OmegaConf.load(CONF / "train.yaml").hydra.sweep._get_node("dir")._value().startswith("${stnlab.new_dir:")
    default = str(tmp_path / "outputs" / "multirun" / "2026-12-02" / "10-00-00")
    folders = at_once(_new_folder, default, processes)
    assert folders == {default} | {f"{default}-{k}" for k in range(2, processes + 1)}


# --- exit codes that tell the truth -------------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_or_ctrl_c_stops_at_a_step_with_its_checkpoint_and_a_non_zero_status(
    signum, status, finished, tmp_path
):

    overrides, _ = finished
    run = tmp_path / "run"
    stop = f"+callbacks.stop={{_target_:tiny_runs.SignalAt,step:4,signum:{int(signum)}}}"
    res = run_script(
        "train.py",
        *overrides,
        f"run_dir={run}",
        "trainer.max_epochs=3",
        stop,
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT / "tests")},
    )
    assert res.returncode == status, res.stderr[-3000:]
    name = signal.Signals(signum).name
    assert res.stderr.strip().splitlines()[-1] == (
        f"stnlab: error: {name} stopped the run at step 5 (epoch 1); {run}/checkpoints/last.ckpt holds it: "
        f"continue with resume=last run_dir={run}"
    )  # the step under way when the signal came (step 5) was finished, then the fit stopped
    assert "Traceback" not in res.stderr and not (run / "metrics.json").exists()
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 5
    resumed = run_script("train.py", *overrides, f"run_dir={run}", "trainer.max_epochs=3", "resume=last", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((run / "metrics.json").read_text())["data/train_images"] > 0


def test_a_run_that_would_train_nothing_is_refused(finished, tmp_path):
    overrides, run_a = finished
    with pytest.raises(ConfigError, match=r"trainer.max_time=00:00:00:00 trains nothing"):
        train(compose([*overrides, f"run_dir={tmp_path / 'run'}", "trainer.max_time=00:00:00:00"]))
    with pytest.raises(ConfigError, match=r"has trained 2 epochs, so trainer.max_epochs=2 leaves nothing to train"):
        train(compose([*overrides, "resume=last", f"run_dir={run_a}"]))
    assert not (tmp_path / "run").exists()


def test_new_training_settings_on_resume_are_refused(finished):
    """Lightning restores the optimizer (its lr), the schedule and the RNG from the checkpoint: a new optim.lr
    would be recorded in hparams.yaml and never used."""
    overrides, run_a = finished
    with pytest.raises(ConfigError, match=r"other settings \(optim.lr: 0.01 in the checkpoint, 0.1 now\)"):
        train(compose([*overrides, "resume=last", f"run_dir={run_a}", "trainer.max_epochs=3", "optim.lr=0.1"]))


@pytest.mark.parametrize(
    "override, problem",
    [
        ("trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches=0 must be an integer >= 1"),
        ("trainer.check_val_every_n_epoch=0", "trainer.check_val_every_n_epoch=0 must be an integer >= 1"),
        ("trainer.val_check_interval=0", "trainer.val_check_interval=0 must be > 0"),
        ("trainer.accelerator=tpu", "trainer.accelerator=tpu is not available on this machine"),
        # One more than the cores (a larger count, unchecked, would start that many training processes).
        (f"trainer.devices={(os.cpu_count() or 1) + 1}", "this machine has .* CPU cores; use at most"),
        # Each DataLoader worker is a copy of the process: one over the bound (an unchecked 100000 exhausts memory).
        (f"data.num_workers={4 * (os.cpu_count() or 1) + 1}", "CPU cores, and each worker is a copy of the training"),
        ("model.backbone.widths=[-8,8,8]", r"model.backbone.widths=\[-8,8,8\] must be positive integers"),
        ("module.label_smoothing=2", r"module.label_smoothing=2 must be in 0..1"),
    ],
)
def test_values_that_would_crash_mid_run_are_one_line_before_any_work(override, problem, tiny_overrides, tmp_path):
    with pytest.raises(ConfigError, match=problem):
        train(compose(tiny_overrides + FAST + [override]))
    assert not (tmp_path / "data").exists() and not (tmp_path / "run").exists()


def test_validation_interval_beyond_the_epoch_is_one_line(finished, tmp_path):
    overrides, _ = finished
    with pytest.raises(ConfigError, match=r"val_check_interval=1000 is beyond the epoch's 3 training batches"):
        train(compose([*overrides, f"run_dir={tmp_path / 'run'}", "trainer.val_check_interval=1000"]))


@pytest.mark.e2e
def test_non_finite_loss_stops_the_cli_with_one_line(gtsrb_mirror, tmp_path):
    assert issubclass(NonFiniteLossError, StnlabError)  # a sweep marks the trial failed and goes on
    res = train_cli(
        *tiny_run(gtsrb_mirror, tmp_path / "data", tmp_path / "run", "optim.lr=1e30", "augment=none"), cwd=tmp_path
    )
    assert res.returncode == 2, res.stderr[-3000:]
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("stnlab: error: training loss became") and "at step" in last and "lower optim.lr" in last
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("override", ["trainer.limit_val_batches=0", "data.val_tracks_per_class=0"])
def test_a_run_without_validation_says_so_and_completes(override, gtsrb_mirror, data_root, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="stnlab"):
        metrics = train(compose(tiny_run(gtsrb_mirror, data_root, tmp_path / "run", override, "trainer.max_epochs=1")))
    warned = [r.getMessage() for r in caplog.records if "no validation" in r.getMessage()]
    assert len(warned) == 1 and override.split(".")[-1] in warned[0] and "the last epoch is checkpointed" in warned[0]
    assert "val/acc_best" not in metrics and "test/acc" in metrics
    assert (tmp_path / "run" / "metrics.json").is_file()
