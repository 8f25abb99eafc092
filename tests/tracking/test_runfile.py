"""The offline run-file reader (what `wandb sync` would upload): history, summary, config, media."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from stnlab.tracking.runfile import read_run


@pytest.mark.e2e
def test_training_run_file_holds_history_summary_and_config(short_runs):
    run = short_runs["run_a"]
    metrics = json.loads((run / "metrics.json").read_text())
    (offline,) = run.glob("wandb/offline-run-*")
    record = read_run(offline)
    assert record.complete and record.name == "custom-no_st-affine-gtsrb32-s1" and record.job_type == "train"
    assert {"variant:no_st", "transform:affine", "dataset:gtsrb", "size:32"} <= set(record.tags)
    # History: one training loss per step (4 epochs x 3 batches), one validation per epoch.
    assert len(record.metric("train/loss_step")) == 12 and len(record.metric("val/acc")) == 4
    assert max(record.metric("val/acc")) == pytest.approx(metrics["val/acc_best"])
    # Summary: what app.py puts there (parameters, throughput, fit time, test figures, delta to 99.46).
    summary = record.summary
    assert summary["model/params"] == metrics["model/params"] > 0
    assert (
        summary["perf/train_img_per_s"] == pytest.approx(metrics["perf/train_img_per_s"])
        and summary["perf/train_img_per_s"] > 0
    )
    assert summary["time/fit_s"] == pytest.approx(metrics["time/fit_s"])
    assert summary["val/acc"] == {"max": pytest.approx(metrics["val/acc_best"])}  # define_metric(summary="max")
    assert "baseline/delta_vs_idsia" not in summary  # 12 test images: not the whole official test set
    # Config: flat keys, filterable in the dashboard.
    assert record.config["model.name"] == "no_st" and record.config["optim.lr"] == 0.003
    assert record.config["data.image_size"] == 32 and record.config["seed"] == 1


def test_logged_image_is_in_the_run_file_and_its_files(tmp_path, monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    pixels = np.zeros((6, 8, 3), dtype=np.uint8)
    pixels[2:4, 1:7] = (200, 30, 30)
    run = wandb.init(
        project="stnlab-test",
        dir=str(tmp_path),
        name="media-check",
        config={"a": 1, "b.c": "x"},
        settings=wandb.Settings(x_disable_stats=True, silent=True),
    )
    run.log({"loss": 0.5, "examples/sign": wandb.Image(pixels, caption="a red bar")})
    run.log({"loss": 0.25})
    run.summary["best"] = 7
    run.finish()
    (offline,) = tmp_path.glob("wandb/offline-run-*")
    record = read_run(offline)
    assert record.complete and record.name == "media-check"
    assert record.config["a"] == 1 and record.config["b.c"] == "x"
    assert record.metric("loss") == [0.5, 0.25] and record.summary["best"] == 7
    (image,) = record.media("examples/sign")
    assert image["_type"] == "image-file" and (image["width"], image["height"]) == (8, 6)
    assert image["caption"] == "a red bar" and image["path"] in record.files
    saved = np.asarray(Image.open(offline / "files" / image["path"]).convert("RGB"))
    assert np.array_equal(saved, pixels)


def test_unfinished_file_is_reported_incomplete(tmp_path):
    path = tmp_path / "run-x.wandb"
    path.write_bytes(b":W&B\xe1\xbe\x00")  # the header alone, as W&B's service leaves it before flushing
    record = read_run(path, wait_s=0.2)
    assert not record.complete and record.history == [] and record.name == ""
    (tmp_path / "bad.wandb").write_bytes(b"nope")
    with pytest.raises(ValueError, match="not a W&B run file"):
        read_run(tmp_path / "bad.wandb")


def test_a_file_read_mid_write_gives_the_records_before_the_torn_chunk(tmp_path, monkeypatch):
    """W&B's service appends while a finished run's file is read (a CI run caught the tail cut short):
    about a hundred prefixes of a real run file, cut through headers and chunks alike, and a copy with a corrupted
    last chunk must each read as an unfinished run holding the records before the cut."""
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    run = wandb.init(
        project="stnlab-test", dir=str(tmp_path), settings=wandb.Settings(x_disable_stats=True, silent=True)
    )
    for step in range(3):
        run.log({"loss": 1.0 / (step + 1)})
    run.finish()
    (offline,) = tmp_path.glob("wandb/offline-run-*")
    whole = read_run(offline)
    assert whole.complete and whole.metric("loss") == [1.0, 0.5, 1.0 / 3]
    data = next(offline.glob("run-*.wandb")).read_bytes()
    cut = tmp_path / "cut" / "run-cut.wandb"
    cut.parent.mkdir()
    for end in range(7, len(data), max(1, len(data) // 97)):
        cut.write_bytes(data[:end])
        part = read_run(cut, wait_s=0)
        assert not part.complete and part.metric("loss") == whole.metric("loss")[: len(part.history)]
    flipped = bytearray(data)
    flipped[-2] ^= 0xFF
    cut.write_bytes(bytes(flipped))
    assert not read_run(cut, wait_s=0).complete
