"""A few batches of `two_st` on the real GTSRB mirror (skipped where none is set or found)."""

from __future__ import annotations

import json

import pytest

from conftest import ROOT, compose, real_mirror
from stnlab.training.run import train

MIRROR = real_mirror()


@pytest.mark.skipif(
    MIRROR is None, reason="no GTSRB mirror: set GTSRB_MIRROR or place ../shared/gtsrb beside the checkout"
)
def test_two_st_trains_on_real_gtsrb(tmp_path):
    # The decoded cache lives in the checkout's data/ (git-ignored) so reruns start in seconds.
    metrics = train(
        compose(
            [
                "model=two_st",
                f"data.mirror={MIRROR}",
                f"data.root={ROOT / 'data'}",
                f"run_dir={tmp_path / 'run'}",
                "data.image_size=32",
                "trainer.max_epochs=1",
                "trainer.limit_train_batches=4",
                "trainer.limit_val_batches=2",
                "trainer.limit_test_batches=2",
                "trainer.enable_progress_bar=false",
                "trainer.accelerator=cpu",
                "trainer.log_every_n_steps=1",
            ]
        )
    )
    assert 0.0 <= metrics["val/acc_best"] <= 1.0
    # The mirror holds the official test labels (GTSRB_Final_Test_GT.zip): the best checkpoint is scored on them.
    assert 0.0 <= metrics["test/acc"] <= 1.0
    report = json.loads((tmp_path / "run" / "eval" / "test_report.json").read_text())
    assert report["num_images"] == 2 * 500  # limit_test_batches x eval_batch_size of the 12,630 official test images
    assert list((tmp_path / "run").glob("wandb/offline-run-*/run-*.wandb"))
