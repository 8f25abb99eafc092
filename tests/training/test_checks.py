"""The run's config checks (stnlab.training.checks): each bad value is one ConfigError line naming the problem and
the fix, before any data is fetched or a run folder started."""

from __future__ import annotations

import os

import pytest
import torch

from conftest import compose, run_script
from stnlab.errors import ConfigError
from stnlab.training.run import train


@pytest.mark.parametrize(
    "override, problem",
    [
        ("optim.lr=0", "optim.lr=0 must be positive"),
        ("optim.lr=fast", "optim.lr=fast is not a number"),
        ("optim.lr=nan", "optim.lr=nan is not a number"),
        ("data.batch_size=0", "data.batch_size=0 must be a positive integer"),
        ("data.eval_batch_size=2.5", "data.eval_batch_size=2.5 is not an integer"),
        ("data.image_size=8", "is too small .*; change model.* or data.image_size"),  # the IDSIA two_st network
        ("model=no_st data.image_size=7", "data.image_size=7 is too small; use at least 8"),
        ("model.transformers.conv2.position=5", "ST 'conv2' position 5 is beyond the backbone: use 0"),
        ("checkpoint.every_n_train_steps=-1", "checkpoint.every_n_train_steps=-1 must be >= 0"),
        ("data.download_retries=0", "data.download_retries=0 must be positive"),
        ("data.val_tracks_per_class=-1", "data.val_tracks_per_class=-1 must be >= 0"),
        ("resume=RUN/nowhere.ckpt", "no such checkpoint file"),
        ("resume=last", "resume=last: .*last.ckpt does not exist"),
        ("resume=RUN/broken.ckpt", "checkpoint .*broken.ckpt is truncated or corrupt"),
        # issue 16, item 7: these raised tracebacks, late
        ("resume=RUN/plain.ckpt", "plain.ckpt is not a training checkpoint .*drop resume="),
        ("seed=-1", "seed=-1 must be in 0..4294967295"),
        ("seed=4294967296", "seed=4294967296 must be in 0..4294967295"),
        ("seed=abc", "seed=abc is not an integer"),
        ("data.num_workers=-1", "data.num_workers=-1 must be >= 0"),
        ("data.num_workers=two", "data.num_workers=two is not an integer"),
        ("+optim.foo=1", "optim.foo is not an argument of torch.optim.SGD .*; drop the optim.foo override"),
        ("optim=adam +optim.momentum=0.9", "optim.momentum is not an argument of torch.optim.Adam"),
        ("scheduler=step +scheduler.bar=2", "scheduler.bar is not an argument of torch.optim.lr_scheduler.StepLR"),
        ("module.locnet_lr_scale=abc", "module.locnet_lr_scale=abc is not a number"),
        # issue 16, item 6: these tested untrained weights without a word
        ("trainer.max_epochs=0", "trainer.max_epochs=0 trains nothing: the test would measure untrained weights"),
        ("trainer.max_steps=0", "trainer.max_steps=0 trains nothing"),
        ("trainer.max_epochs=-5", "trainer.max_epochs=-5 trains nothing"),
        ("trainer.limit_train_batches=0", "trainer.limit_train_batches=0 trains nothing"),
        ("trainer.limit_val_batches=-1", "trainer.limit_val_batches=-1 must be >= 0"),
        ("trainer.limit_test_batches=abc", "trainer.limit_test_batches=abc is not a number"),
    ],
)
def test_invalid_config_fails_before_any_work(override, problem, tiny_overrides, tmp_path):
    (tmp_path / "RUN").mkdir()
    (tmp_path / "RUN" / "broken.ckpt").write_bytes(b"PK\x03\x04" + os.urandom(200))  # a checkpoint cut short
    torch.save({"weights": torch.zeros(2)}, tmp_path / "RUN" / "plain.ckpt")  # a torch file, not a checkpoint
    overrides = override.replace("RUN", str(tmp_path / "RUN")).split()
    with pytest.raises(ConfigError, match=problem):
        train(compose(tiny_overrides + ["model=two_st", *overrides]))
    assert not (tmp_path / "data").exists()  # nothing fetched, nothing decoded
    assert not (tmp_path / "run").exists()  # no run directory started


def test_deterministic_gpu_run_with_sts_is_refused_before_any_work(tiny_overrides, tmp_path, monkeypatch):
    # Seen on an H100 (torch 2.11): grid_sampler_2d_backward_cuda raises under use_deterministic_algorithms(True).
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(ConfigError, match="deterministic=true cannot run on a GPU.*use trainer.deterministic=warn"):
        train(compose(tiny_overrides + ["model=two_st", "trainer.accelerator=auto", "trainer.deterministic=true"]))
    assert not (tmp_path / "data").exists()


def test_bad_trainer_argument_is_one_line(tiny_overrides):
    with pytest.raises(ConfigError, match="trainer: .*precision.*; fix the trainer.\\* override"):
        train(compose(tiny_overrides + ["model=no_st", "trainer.precision=13", "wandb.mode=disabled"]))


def test_cli_unknown_transform_lists_the_choices(tmp_path):
    res = run_script("train.py", "transform=shear", cwd=tmp_path, env={"WANDB_MODE": "disabled"}, timeout=120)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "Could not find 'transform/shear'" in res.stderr and "affine" in res.stderr  # Hydra lists the options
    assert not (tmp_path / "outputs").exists()
