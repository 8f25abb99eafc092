"""callbacks.throughput: Lightning's ThroughputMonitor, with the per-epoch figures that metrics.json and the
sweeps read on top."""

import csv

import lightning.pytorch as pl
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, TensorDataset

from conftest import CONF
from stnlab.training.callbacks import EpochThroughput


class Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(4, 3)

    def training_step(self, batch, batch_idx):
        return torch.nn.functional.cross_entropy(self.net(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_the_config_group_builds_the_monitor_and_each_epoch_logs_its_speed(tmp_path, one_torch_thread):
    monitor = instantiate(OmegaConf.load(CONF / "callbacks" / "throughput.yaml").throughput, window_size=2)
    assert isinstance(monitor, EpochThroughput)
    data = DataLoader(TensorDataset(torch.randn(40, 4), torch.randint(0, 3, (40,))), batch_size=8)
    trainer = pl.Trainer(
        max_epochs=2,
        callbacks=[monitor],
        logger=CSVLogger(tmp_path),
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    trainer.fit(Tiny(), data)
    done = trainer.callback_metrics
    assert done["perf/train_img_per_s"] > 0 and done["perf/train_img_per_cpu_s"] > 0
    assert done["time/elapsed_min"] > 0
    rows = list(csv.DictReader((tmp_path / "lightning_logs" / "version_0" / "metrics.csv").open()))
    # Lightning's own figures: 2 epochs of 5 batches of 8 images, and a rolling rate once 2 batches were seen.
    assert max(float(r["train/samples"]) for r in rows if r.get("train/samples")) == 80
    assert any(r.get("train/device/samples_per_sec") for r in rows)
    # One figure per epoch: that epoch's 40 images over its training seconds, from the monitor's running time.
    per_epoch = [float(r["perf/train_img_per_s"]) for r in rows if r.get("perf/train_img_per_s")]
    seconds = {int(r["train/batches"]): float(r["train/time"]) for r in rows if r.get("train/time")}
    assert per_epoch == pytest.approx([40 / seconds[5], 40 / (seconds[10] - seconds[5])], rel=1e-4)
