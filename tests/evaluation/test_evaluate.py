"""Evaluation report: figures on a hand-made case, the test-stage callback, and ``src/evaluate.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from conftest import ROOT, run_app
from gtsrb_fixture import make_archives
from short_runs import single_thread
from stnlab.data.classes import GTSRB_CLASSES
from stnlab.errors import ConfigError
from stnlab.evaluation import ReportBuilder, evaluate
from stnlab.evaluation.checkpoint_report import evaluate_checkpoint
from stnlab.evaluation.files import write_report
from stnlab.evaluation.metrics import group_interval
from stnlab.tracking.runfile import read_run
from stnlab.training.checkpoints import load_checkpoint_file

# Six images of classes 0, 0, 1, 1, 2, 2 predicted as 0, 1, 1, 1, 2, 0 (softmax confidence of the prediction
# rises with the index, so image 5 is the most confident error).
LABELS = torch.tensor([0, 0, 1, 1, 2, 2])
PREDS = torch.tensor([0, 1, 1, 1, 2, 0])


@pytest.fixture(autouse=True)
def _one_thread():
    with single_thread():
        yield


class FixedLogits(nn.Module):
    """Reads the image's index from its first pixel and returns that image's fixed logits (N, 43): by default
    PREDS with a confidence rising with the index."""

    def __init__(self, preds: torch.Tensor = PREDS):
        super().__init__()
        self.logits = torch.full((len(preds), 43), -5.0)
        self.logits[torch.arange(len(preds)), preds] = torch.arange(len(preds), dtype=torch.float) + 1

    def forward(self, images):
        return self.logits[images[:, 0, 0, 0].long()]


def _images(n: int = 6) -> torch.Tensor:
    return torch.arange(n, dtype=torch.uint8)[:, None, None, None].expand(n, 3, 8, 8).contiguous()


def best_checkpoint(run: Path) -> str:
    """The checkpoint a finished run chose (its metrics.json's ``best_checkpoint``)."""
    return json.loads((run / "metrics.json").read_text())["best_checkpoint"]


def test_report_of_fixed_predictions_matches_hand_computed_figures():
    report = evaluate(FixedLogits(), _images(), LABELS, batch_size=4, max_errors=10)  # two batches
    assert report.num_images == 6
    assert report.accuracy == pytest.approx(4 / 6)
    assert report.per_class_accuracy[:3] == pytest.approx([0.5, 1.0, 0.5])
    assert report.per_class_accuracy[3] is None and report.support[:4] == [2, 2, 2, 0]
    # F1: class 0 P=1/2 R=1/2 -> 0.5; class 1 P=2/3 R=1 -> 0.8; class 2 P=1 R=1/2 -> 2/3; absent classes excluded.
    assert report.f1_macro == pytest.approx((0.5 + 0.8 + 2 / 3) / 3, abs=1e-6)
    assert report.confusion[:3, :3].tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    pairs = report.most_confused(5)
    assert [(p["true_id"], p["pred_id"], p["count"]) for p in pairs] == [(0, 1, 1), (2, 0, 1)]
    assert pairs[0]["true"] == GTSRB_CLASSES[0] == "speed limit 20" and pairs[0]["pred"] == "speed limit 30"
    assert pairs[1]["fraction_of_true"] == 0.5
    # Errors: images 5 (2 -> 0) and 1 (0 -> 1), most confident first, with their own pixels.
    assert [(e.index, e.true_id, e.pred_id) for e in report.errors] == [(5, 2, 0), (1, 0, 1)]
    assert report.errors[0].confidence > report.errors[1].confidence
    assert int(report.errors[0].image[0, 0, 0]) == 5


def test_interval_resamples_whole_tracks():
    # 10 tracks of 30 frames: 9 all right, 1 all wrong -> 90%. Resampling tracks moves the accuracy by
    # whole tracks (a draw with 0 or 3 failed tracks: 100% or 70%); resampling frames would barely move it.
    correct = torch.ones(300, dtype=torch.bool)
    correct[:30] = False
    tracks = torch.arange(10).repeat_interleave(30)
    by_track = group_interval(correct, tracks, samples=4000)
    by_frame = group_interval(correct, torch.arange(300), samples=4000)
    assert by_track.groups == 10 and by_frame.groups == 300
    assert by_track.low <= 0.9 <= by_track.high and by_frame.low <= 0.9 <= by_frame.high
    assert by_track.low <= 0.75 and by_track.high == 1.0
    assert by_frame.high - by_frame.low < 0.5 * (by_track.high - by_track.low)
    # No track (test images, -1): every image is its own group, not one group of everything.
    untracked = group_interval(correct, torch.full((300,), -1))
    assert untracked.groups == 300 and untracked.high - untracked.low > 0
    assert group_interval(correct, tracks, samples=500) == group_interval(correct, tracks, samples=500)  # seeded
    with pytest.raises(ValueError, match="must be equal"):
        group_interval(correct, tracks[:10])


def test_paired_difference_cancels_shared_track_difficulty():
    # Both models miss the same 2 hard tracks of 10 entirely; on track 9, a misses 1 frame and b misses 3.
    tracks = torch.arange(10).repeat_interleave(30)
    a = torch.ones(300, dtype=torch.bool)
    a[:60] = False
    b = a.clone()
    a[270], b[270:273] = False, False
    diff = group_interval(a, tracks, samples=4000, baseline=b)
    assert diff.estimate == pytest.approx(2 / 300)
    assert 0 <= diff.low <= diff.estimate <= diff.high  # never negative: a is never worse on any track
    each = group_interval(a, tracks, samples=4000)
    assert diff.high - diff.low < 0.2 * (each.high - each.low)  # the hard tracks' swing cancels in the pair
    same = group_interval(a, tracks, baseline=a)
    assert same.estimate == same.low == same.high == 0


def test_report_interval_from_groups():
    groups = torch.tensor([7, 7, 8, 8, 9, 9])
    report = evaluate(FixedLogits(), _images(), LABELS, groups=groups)
    assert report.interval.groups == 3 and report.interval.low <= 4 / 6 <= report.interval.high
    assert report.as_dict()["accuracy_interval"]["groups"] == 3
    assert evaluate(FixedLogits(), _images(), LABELS).as_dict()["accuracy_interval"] is None


def test_error_gallery_keeps_the_most_confident_errors_across_batches():
    builder = ReportBuilder(43, max_errors=1)
    model, images = FixedLogits(), _images()
    for i in range(0, 6, 2):
        builder.update(model(images[i : i + 2]), LABELS[i : i + 2], images[i : i + 2])
    (only,) = builder.compute().errors
    assert only.index == 5


def _captions_overlap(fig) -> list:
    """Pairs of axes titles whose drawn boxes intersect, and titles drawn outside the figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    boxes = [ax.title.get_window_extent(renderer) for ax in fig.axes if ax.get_title(loc="left")]
    inside = fig.bbox
    clashes = [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :] if a.overlaps(b)]
    return clashes + [b for b in boxes if b.x0 < inside.x0 - 1 or b.x1 > inside.x1 + 1 or b.y1 > inside.y1 + 1]


def test_error_gallery_shows_whole_class_names_without_overlap(tmp_path):
    from stnlab.evaluation.plots import errors_figure, save

    labels = torch.tensor([10, 42, 41, 16, 11, 20, 21, 24, 27, 30, 31, 32])
    preds = torch.tensor([42, 10, 16, 41, 42, 21, 20, 27, 24, 31, 30, 10])  # every one wrong, long names
    report = evaluate(FixedLogits(preds), _images(12), labels, max_errors=12)
    fig = errors_figure(report, title="The 12 most confident of 12 errors, test split, 12 images")
    assert fig._suptitle.get_text() == "The 12 most confident of 12 errors, test split, 12 images"
    titles = [" ".join(ax.get_title(loc="left").split()) for ax in fig.axes if ax.get_title(loc="left")]
    assert len(titles) == 12
    longest = "end of no passing for vehicles over 3.5t"  # class 42, the longest GTSRB name
    assert any(f"true: {longest}" in t for t in titles) and any(f"pred: {longest}" in t for t in titles)
    assert not _captions_overlap(fig)
    width, height = Image.open(save(errors_figure(report), tmp_path / "errors.png")).size
    assert 1000 <= width <= 1400 and 400 <= height <= 900


def test_confusion_figure_is_titled_with_the_split_and_images(tmp_path):
    from stnlab.evaluation.plots import confusion_figure

    report = evaluate(FixedLogits(), _images(), LABELS)
    paths = write_report(report, tmp_path, "val")
    assert Image.open(paths["confusion"]).size[0] > 300 and Image.open(paths["errors"]).size[1] > 150
    title = confusion_figure(report).axes[0].get_title()
    assert title == "6 images: accuracy 66.67%, macro F1 65.56%"


def test_report_files(tmp_path):
    report = evaluate(FixedLogits(), _images(), LABELS)
    paths = write_report(report, tmp_path, "val", meta={"checkpoint": "x.ckpt"})
    data = json.loads(paths["json"].read_text())
    assert data["split"] == "val" and data["checkpoint"] == "x.ckpt" and data["num_errors"] == 2
    assert data["per_class"][1] == {"class_id": 1, "name": "speed limit 30", "support": 2, "accuracy": 1.0}
    assert data["errors"][0]["true"] == "speed limit 50" and data["errors"][0]["pred"] == "speed limit 20"
    assert data["confusion_matrix"][2][0] == 1
    for key in ("confusion", "errors"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.e2e
def test_training_run_reports_its_test_stage(short_runs):
    run = short_runs["run_b"]
    metrics = json.loads((run / "metrics.json").read_text())
    report = json.loads((run / "eval" / "test_report.json").read_text())
    assert report["accuracy"] == pytest.approx(metrics["test/acc"])
    assert metrics["test/f1_macro"] == pytest.approx(report["f1_macro"])
    assert report["num_images"] == 12 and 0 < len(report["errors"]) == report["num_errors"]
    assert (run / "eval" / "test_confusion.png").is_file() and (run / "eval" / "test_errors.png").is_file()
    (offline,) = run.glob("wandb/offline-run-*")
    record = read_run(offline)
    assert record.summary["test/f1_macro"] == pytest.approx(metrics["test/f1_macro"])
    (table,) = record.media("test/errors")  # the wandb.Table of errors, with their images
    assert table["_type"] == "table-file" and table["nrows"] == report["num_errors"] and table["path"] in record.files
    (chart,) = record.media("test/confusion_matrix_table")  # the data of wandb.plot.confusion_matrix
    assert chart["nrows"] == 43 * 43
    (png,) = record.media("test/confusion_png")
    assert png["_type"] == "image-file" and png["path"] in record.files


@pytest.mark.e2e
def test_evaluate_cli_matches_the_test_stage(short_runs, tmp_path):
    run = short_runs["run_b"]
    metrics = json.loads((run / "metrics.json").read_text())
    env = dict(os.environ, WANDB_MODE="offline", OMP_NUM_THREADS="1")
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "src" / "evaluate.py"),
            f"ckpt={metrics['best_checkpoint']}",
            "split=test",
            f"out={tmp_path}",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert f"accuracy {100 * metrics['test/acc']:.2f}%" in res.stdout
    report = json.loads((tmp_path / "test_report.json").read_text())
    assert report["accuracy"] == pytest.approx(metrics["test/acc"])
    assert report["checkpoint"] == metrics["best_checkpoint"] and report["run"] == "custom-no_st-affine-gtsrb32-s2"
    assert not (tmp_path / "wandb").exists()  # W&B only on request


def test_evaluation_logs_to_its_own_wandb_run(short_runs, tmp_path):
    from stnlab.evaluation.checkpoint_report import evaluate_checkpoint

    metrics = json.loads((short_runs["run_b"] / "metrics.json").read_text())
    report, _ = evaluate_checkpoint(metrics["best_checkpoint"], "test", out_dir=tmp_path, wandb_mode="offline")
    (offline,) = tmp_path.glob("wandb/offline-run-*")
    record = read_run(offline)
    assert (
        record.job_type == "eval"
        and record.group == "custom-no_st-affine-gtsrb32-s2"
        and record.name == "custom-no_st-affine-gtsrb32-s2-eval-test"
    )
    assert record.config["eval.split"] == "test" and record.config["model.name"] == "no_st"
    assert record.config["wandb.mode"] == "offline"  # the mode this run logged in, not the training run's null
    assert record.summary["test/acc"] == pytest.approx(metrics["test/acc"]) == pytest.approx(report.accuracy)
    (table,) = record.media("test/errors")
    assert table["nrows"] == len(report.errors) > 0


def test_evaluate_val_split_defaults_to_the_run_folder(short_runs):
    run = short_runs["run_a"]
    run_app("evaluate", [f"ckpt={run / 'checkpoints' / 'last.ckpt'}", "split=val"])
    report = json.loads((run / "eval" / "last" / "val_report.json").read_text())  # beside the test stage's
    assert report["split"] == "val" and report["num_images"] == 12  # 1 track of 4 frames per class, 3 classes
    interval = report["accuracy_interval"]
    assert interval["groups"] == 3 and interval["low"] <= report["accuracy"] <= interval["high"]


def test_evaluate_takes_a_run_folder_says_images_for_the_test_set_and_keeps_the_test_stage_report(
    short_runs, tmp_path, capsys
):
    run = short_runs["run_b"]
    best = Path(best_checkpoint(run))
    stage = (run / "eval" / "test_report.json").read_text()
    run_app("evaluate", [f"ckpt={run}", "split=test"])  # a run folder, as resume= takes: its best checkpoint
    printed = capsys.readouterr().out
    assert "over 12 resampled images)" in printed and "tracks" not in printed.splitlines()[0]
    report = json.loads((run / "eval" / best.stem / "test_report.json").read_text())
    assert report["checkpoint"] == str(best.resolve()) and report["source"] == "evaluate.py"
    assert (run / "eval" / "test_report.json").read_text() == stage  # the training run's own report, untouched
    with pytest.raises(SystemExit) as exit_info:
        run_app("evaluate", [f"ckpt={run}", "split=test", f"out={run / 'eval'}"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert "test_report.json is the training run's own test report; evaluate.py does not overwrite it" in err
    run_app("evaluate", [f"ckpt={run}", "split=test"])  # its own earlier report is replaced
    with pytest.raises(SystemExit):
        run_app("evaluate", [f"ckpt={tmp_path}"])
    assert f"{tmp_path} is a folder without checkpoints/; pass ckpt= a run folder" in capsys.readouterr().err


def test_evaluate_against_a_baseline_checkpoint(short_runs, tmp_path, capsys):
    a = best_checkpoint(short_runs["run_a"])
    b = best_checkpoint(short_runs["run_b"])
    run_app("evaluate", [f"ckpt={a}", f"baseline={short_runs['run_b']}", "split=val", f"out={tmp_path}"])  # a folder
    report = json.loads((tmp_path / "val_report.json").read_text())
    vs = report["vs_baseline"]
    assert vs["checkpoint"] == str(Path(b).resolve()) and vs["run"] == "custom-no_st-affine-gtsrb32-s2"
    assert vs["difference"]["estimate"] == pytest.approx(report["accuracy"] - vs["accuracy"])
    assert vs["difference"]["low"] <= vs["difference"]["estimate"] <= vs["difference"]["high"]
    printed = capsys.readouterr().out
    assert "minus baseline custom-no_st-affine-gtsrb32-s2" in printed and "paired over 3 resampled tracks" in printed


def _with_data(ckpt: str, out: Path, **data) -> Path:
    """A copy of ``ckpt`` whose run config says it was trained on ``data`` (same weights)."""
    saved = load_checkpoint_file(ckpt)
    saved["hyper_parameters"]["cfg"]["data"].update(data)
    torch.save(saved, out)
    return out


def test_a_baseline_is_scored_on_the_images_its_own_run_prepared(short_runs, tmp_path):
    a = best_checkpoint(short_runs["run_a"])
    b = best_checkpoint(short_runs["run_b"])
    # The baseline's run read its images from another mirror: the same files, labels and tracks, other colours.
    recoloured = make_archives(tmp_path / "mirror", colour_shift=1)
    base = _with_data(b, tmp_path / "base.ckpt", mirror=str(recoloured), root=str(tmp_path / "data"))
    own, _ = evaluate_checkpoint(base, "val", out_dir=tmp_path / "own")
    on_a_images, _ = evaluate_checkpoint(b, "val", out_dir=tmp_path / "b")
    assert own.accuracy != on_a_images.accuracy  # the premise: the two sets of pixels score differently
    paired, _ = evaluate_checkpoint(a, "val", baseline=base, out_dir=tmp_path / "paired")
    assert paired.comparison["accuracy"] == own.accuracy
    assert paired.comparison["difference"]["estimate"] == pytest.approx(paired.accuracy - own.accuracy)


def test_a_baseline_with_another_validation_split_is_refused(short_runs, tmp_path):
    a = best_checkpoint(short_runs["run_a"])
    b = best_checkpoint(short_runs["run_b"])
    other = _with_data(b, tmp_path / "other_split.ckpt", split_seed=7)
    with pytest.raises(ConfigError, match="has another val split .*same data.val_tracks_per_class and data.split_seed"):
        evaluate_checkpoint(a, "val", baseline=other, out_dir=tmp_path / "paired")


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "no checkpoint given; pass ckpt="),
        (["ckpt=nowhere.ckpt"], "checkpoint nowhere.ckpt not found"),
        (["ckpt=x.ckpt", "splitt=val"], "unknown key 'splitt'"),
        (["ckpt=x.ckpt", "max_errors=many"], "max_errors=many:"),
    ],
)
def test_evaluate_cli_user_errors_are_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_app("evaluate", argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("stnlab: error:") and message in err and len(err.splitlines()) == 1


def test_data_locations_stored_then_environment_then_command_line(tmp_path, monkeypatch):
    from stnlab.training.checkpoints import data_config

    monkeypatch.setenv("GTSRB_MIRROR", str(tmp_path / "env_mirror"))
    cfg = {"model": {"image_size": 32}, "data": {"image_size": 32, "mirror": str(tmp_path), "root": "data"}}
    assert data_config(cfg)["mirror"] == str(tmp_path)  # the stored mirror exists: kept
    cfg["data"]["mirror"] = str(tmp_path / "gone")
    assert data_config(cfg)["mirror"] == str(tmp_path / "env_mirror")  # missing here: the environment's
    cfg["data"]["mirror"] = None  # trained from the official server
    assert data_config(cfg)["mirror"] == str(tmp_path / "env_mirror")
    assert data_config(cfg, {"mirror": "/cli"})["mirror"] == "/cli"


def test_data_overrides_must_keep_the_model_size():
    from stnlab.training.checkpoints import data_config

    # data.* keys as evaluate.py's Hydra config hands them over (parsed values).
    cfg = {"model": {"image_size": 32}, "data": {"image_size": 32, "root": "data", "batch_size": 8}}
    assert data_config(cfg, {"root": "/x", "batch_size": 4})["batch_size"] == 4
    with pytest.raises(ConfigError, match="data.image_size=48 differs from the model's 32"):
        data_config(cfg, {"image_size": 48})


@pytest.mark.parametrize(
    "case, argv, message",
    [
        ("text", ["ckpt=FILE"], "FILE is not an stnlab checkpoint (not a PyTorch checkpoint file)"),
        ("empty", ["ckpt=FILE"], "FILE is not an stnlab checkpoint (not a PyTorch checkpoint file)"),
        ("torch_file", ["ckpt=FILE"], "FILE is not an stnlab checkpoint ("),
        ("none", ["ckpt=x.ckpt", "batch_size=0"], "batch_size=0: expected a positive integer"),
        ("none", ["ckpt=x.ckpt", "batch_size=-3"], "batch_size=-3: expected a positive integer"),
        ("none", ["ckpt=x.ckpt", "max_errors=-1"], "max_errors=-1: expected an integer >= 0"),
        ("none", ["ckpt=x.ckpt", "device=cuda"], "device=cuda: no CUDA GPU is usable here; use device=cpu"),
        ("none", ["ckpt=x.ckpt", "device=tpu9"], "device=tpu9 is not a device; use auto, cpu or cuda"),
    ],
)
def test_evaluate_bad_checkpoint_files_and_values_are_one_line(case, argv, message, tmp_path, monkeypatch, capsys):
    """Issue 16, item 7: these were tracebacks (UnpicklingError, EOFError, a DataLoader ValueError, CUDA init)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same on a GPU machine
    path = tmp_path / "model.ckpt"
    if case == "text":
        path.write_text("this is a text file, not a checkpoint\n")
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "torch_file":
        torch.save({"weights": torch.zeros(3)}, path)
    argv = [a.replace("FILE", str(path)) for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        run_app("evaluate", argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("stnlab: error:") and message.replace("FILE", str(path)) in err and len(err.splitlines()) == 1


def test_curve_scores_every_epoch_checkpoint_against_the_runs_wall_minutes(tiny_overrides, tmp_path, capsys):
    """checkpoint.every_epoch=true keeps one checkpoint per epoch; evaluate.py curve=true scores each on the test set
    (the run itself never does) and compare.py curve=test/acc draws them against wall minutes."""
    import csv

    from conftest import compose, run_app
    from stnlab.training.run import train

    run = tmp_path / "run"
    train(
        compose(
            tiny_overrides
            + ["model=compact_no_st", "trainer.max_epochs=3", "checkpoint.every_epoch=true", "test=false"]
        )
    )
    assert sorted(p.name for p in (run / "checkpoints" / "epochs").glob("*.ckpt")) == [
        "epoch-00.ckpt",
        "epoch-01.ckpt",
        "epoch-02.ckpt",
    ]
    run_app("evaluate", [f"ckpt={run}", "curve=true"])  # device=auto, the default
    out = capsys.readouterr().out
    with (run / "eval" / "test_curve.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"] and all(0 <= float(r["test/acc"]) <= 1 for r in rows)
    minutes = [float(r["time/elapsed_min"]) for r in rows]
    assert minutes == sorted(minutes) and minutes[0] > 0
    assert out.count("test: epoch ") == 3 and ("first reached 99.46%" in out or "never reached" in out)
    run_app("compare", [f"runs=[{run}]", "x=minutes", "curve=test/acc", f"out={tmp_path / 'cmp'}"])
    assert (tmp_path / "cmp" / "compare_test_acc_minutes.png").stat().st_size > 1000


def test_an_output_folder_that_cannot_be_made_is_one_line(short_runs, tmp_path, capsys):
    metrics = json.loads((short_runs["run_b"] / "metrics.json").read_text())
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as exit_info:
        run_app("evaluate", [f"ckpt={metrics['best_checkpoint']}", "split=val", f"out={tmp_path / 'notes.txt'}"])
    assert exit_info.value.code == 2
    # The last line: a log handler an earlier test of this process left on its closed capture may print above it.
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert (
        err == f"stnlab: error: cannot write into {tmp_path / 'notes.txt'} (File exists); pass out= a writable folder"
    )
    assert (tmp_path / "notes.txt").read_text() == "mine"
