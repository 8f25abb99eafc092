"""Speed switches (stnlab/training/speed.py): config checks, auto rules, the finite-loss watch; GPU paths where a GPU is."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from stnlab.errors import ConfigError
from stnlab.training.finite_loss import FiniteWatch
from stnlab.training.speed import SpeedSwitches, resident_device, speed_settings, use_channels_last

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_speed_settings_fill_defaults_and_reject_bad_values():
    assert speed_settings(None)["device_resident"] == "auto" and speed_settings({"compile": True})["compile"] is True
    with pytest.raises(ConfigError, match="speed.fast is not a speed switch"):
        speed_settings({"fast": True})
    with pytest.raises(ConfigError, match="speed.channels_last=sometimes must be true, false or auto"):
        speed_settings({"channels_last": "sometimes"})


def test_auto_switches_follow_the_device(monkeypatch):
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert not use_channels_last("auto", cpu) and use_channels_last("auto", gpu) and use_channels_last(True, cpu)
    assert resident_device("auto", cpu, 10) is None and resident_device(True, cpu, 10) is None
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (8 * 2**30, 80 * 2**30))
    assert resident_device("auto", gpu, 2**30) == gpu  # 1 GiB of data, 8 GiB free
    assert resident_device("auto", gpu, 3 * 2**30) is None  # over a quarter of the free memory
    assert resident_device(True, gpu, 3 * 2**30) == gpu and resident_device(False, gpu, 1) is None


def test_finite_watch_names_the_step_on_cpu():
    seen = []
    watch = FiniteWatch(lambda value, step, epoch: seen.append((value, step, epoch)))
    watch(torch.tensor(1.5), 6, 0)
    watch(torch.tensor(float("nan")), 7, 1)
    assert len(seen) == 1 and seen[0][1:] == (7, 1) and seen[0][0] != seen[0][0]


class _Probe(pl.Callback):
    def __init__(self):
        self.seen = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        conv = pl_module.net.backbone.blocks[0][0].weight
        self.seen = {
            "channels_last": conv.is_contiguous(memory_format=torch.channels_last),
            "batch_device": batch[0].device.type,
            "resident": getattr(trainer.datamodule, "resident_device", None),
        }


@pytest.mark.e2e
def test_channels_last_switch_reaches_the_run(tiny_overrides):
    from conftest import compose
    from stnlab.training.run import train

    probe = _Probe()
    train(
        compose(
            tiny_overrides
            + ["model=no_st", "trainer.fast_dev_run=true", "speed.channels_last=true", "callbacks.test_report=null"]
        ),
        extra_callbacks=[probe],
    )
    assert probe.seen == {"channels_last": True, "batch_device": "cpu", "resident": None}


def test_bad_speed_switch_fails_before_training(tiny_overrides, tmp_path):
    from conftest import compose
    from stnlab.training.run import train

    with pytest.raises(ConfigError, match="speed.compile_modes is not a speed switch"):
        train(compose(tiny_overrides + ["+speed.compile_modes=max"]))
    assert not (tmp_path / "data" / "cache").exists()


def _random_data(n=64, size=32, batch=16):
    from stnlab.bench.measure import RandomData

    return RandomData(n, size, batch_size=batch, eval_batch_size=batch, num_val=batch)


@cuda
def test_resident_loader_gives_the_same_batches_on_the_gpu():
    host, resident = _random_data(), _random_data()
    for dm in (host, resident):
        dm.setup("fit")
    resident.resident_device = torch.device("cuda")
    torch.manual_seed(0)
    a = list(host.train_dataloader())
    torch.manual_seed(0)
    b = list(resident.train_dataloader())
    assert all(y.is_cuda and x.is_cuda for x, y in b)
    assert all(torch.equal(x1, x2.cpu()) and torch.equal(y1, y2.cpu()) for (x1, y1), (x2, y2) in zip(a, b))


@cuda
def test_finite_watch_on_the_gpu_reports_without_syncing_each_step():
    seen = []
    watch = FiniteWatch(lambda value, step, epoch: seen.append(step))
    for step in range(5):
        watch(torch.tensor(float("inf") if step == 3 else 1.0, device="cuda"), step, 0)
    watch.flush()
    assert seen == [3]


@cuda
def test_gpu_fit_uses_resident_data_channels_last_and_bf16():
    from omegaconf import OmegaConf

    from conftest import compose
    from stnlab.training.module import build_module

    cfg = OmegaConf.to_container(compose(["model=two_st", "data.image_size=32"]), resolve=True)
    probe = _Probe()
    trainer = pl.Trainer(
        accelerator="gpu",
        devices=1,
        precision="bf16-mixed",
        benchmark=True,
        max_epochs=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[SpeedSwitches({}), probe],
    )
    trainer.fit(build_module(cfg), datamodule=_random_data())
    assert probe.seen == {"channels_last": True, "batch_device": "cuda", "resident": torch.device("cuda", 0)}


def test_training_steps_read_nothing_back_from_the_device(monkeypatch):
    """A value read on the host (.item(), bool(), float(), .tolist()) waits for the GPU: no step may do one.

    On a CPU run the finite-loss check (stnlab.training.finite_loss) reads the loss at once; on a GPU it reads it
    asynchronously, so its frames are left out. The rest (Lightning, torchmetrics, the module) must not read."""
    import traceback

    from omegaconf import OmegaConf

    from conftest import compose
    from stnlab.training.module import build_module

    calls, recording = [], [False]

    def spy(name):
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, **kwargs):
            if recording[0]:
                where = traceback.extract_stack(limit=2)[0]
                if not where.filename.endswith("finite_loss.py"):
                    calls.append(f"{name} in {where.filename}:{where.lineno}")
            return original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapper)

    for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
        spy(name)

    class Window(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            recording[0] = batch_idx >= 1  # the first step may set things up

        def on_train_epoch_end(self, trainer, pl_module):
            recording[0] = False

    cfg = OmegaConf.to_container(compose(["model=no_st", "data.image_size=32"]), resolve=True)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_val_batches=0,
        logger=False,
        log_every_n_steps=50,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Window(), SpeedSwitches({})],
    )
    trainer.fit(build_module(cfg), datamodule=_random_data(n=16, batch=4))
    assert calls == []


@pytest.mark.slow
def test_compiled_run_writes_checkpoints_an_eager_model_loads(tiny_overrides):
    from conftest import compose
    from stnlab.training.checkpoints import load_module
    from stnlab.training.run import train

    # Two narrow STs: the sampler's grid and grid_sample must compile, backward included.
    narrow = [
        "model.backbone.widths=[8,8,8]",
        "model.backbone.fc=16",
        "model.transformers.input.locnet.widths=[8,8,8]",
        "model.transformers.conv2.locnet.widths=[8,8,8]",
    ]
    metrics = train(
        compose(
            tiny_overrides
            + narrow
            + ["model=two_st", "trainer.max_epochs=1", "speed.compile=true", "callbacks.test_report=null"]
        )
    )
    module = load_module(metrics["best_checkpoint"])
    assert not any("_orig_mod" in k for k in module.state_dict())
    assert 0 <= metrics["test/acc"] <= 1
