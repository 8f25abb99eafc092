"""Speed switches of a run (the ``speed:`` config section), applied by one Lightning callback.

Precision (``trainer.precision``) and cuDNN autotuning (``trainer.benchmark``) are Lightning's
own Trainer arguments (``trainer=gpu`` sets bf16-mixed and benchmark). What this module adds:

- ``device_resident``: the whole dataset is copied to the accelerator once, so the loaders
  gather batches there (no host-to-device copy per step). ``auto``: on a GPU, when the
  images fit in a quarter of its free memory.
- ``channels_last``: NHWC weights, so convolutions run on the NHWC kernels (``auto``: on GPUs).
- ``compile``: ``torch.compile`` the network and the input normalisation, in place
  (``nn.Module.compile``: checkpoints keep their keys).
- ``matmul_precision``: ``torch.set_float32_matmul_precision`` (``high``: TF32 tensor cores).
- ``threads``: ``torch.set_num_threads`` for this process (CPU runs side by side).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch

from stnlab.config.checks import switch
from stnlab.config.schema import speed_settings

log = logging.getLogger(__name__)

RESIDENT_SHARE = 0.25  # device_resident=auto: the data may take this share of the free accelerator memory


def use_channels_last(setting: Any, device: torch.device) -> bool:
    on = switch("speed.channels_last", setting)
    return device.type == "cuda" if on is None else on


def resident_device(setting: Any, device: torch.device, nbytes: int) -> torch.device | None:
    """Where to keep a dataset of ``nbytes``: the accelerator, or None (host memory, as loaded)."""
    on = switch("speed.device_resident", setting)
    if device.type == "cpu" or on is False:
        return None
    if on is None:
        if device.type != "cuda":
            return None
        free, _ = torch.cuda.mem_get_info(device)
        if nbytes > RESIDENT_SHARE * free:
            log.info(
                "data stays in host memory: %.1f GB is over %d%% of the GPU's free %.1f GB",
                nbytes / 1e9,
                100 * RESIDENT_SHARE,
                free / 1e9,
            )
            return None
    return device


def dataset_bytes(datamodule) -> int:
    splits = (getattr(datamodule, name, None) for name in ("train", "val", "test"))
    return sum(s.images.numel() * s.images.element_size() + s.labels.numel() * 8 for s in splits if s is not None)


class SpeedSwitches(pl.Callback):
    """Applies the ``speed:`` section once the Trainer knows its device (before the model moves there)."""

    def __init__(self, speed: Mapping | None = None):
        self.settings = speed_settings(speed)
        self._compiled = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        s = self.settings
        device = trainer.strategy.root_device
        if s["threads"]:
            torch.set_num_threads(int(s["threads"]))
        if s["matmul_precision"] and device.type == "cuda":  # process-wide: leave CPU runs as they are
            torch.set_float32_matmul_precision(s["matmul_precision"])
        if use_channels_last(s["channels_last"], device):
            pl_module.to(memory_format=torch.channels_last)
        if s["compile"] and not self._compiled:  # in place (nn.Module.compile): the parts that run every step
            for part in (pl_module.net, pl_module.normalizer):
                part.compile(mode=s["compile_mode"])
            self._compiled = True
        dm = trainer.datamodule
        if dm is not None and hasattr(dm, "resident_device"):
            dm.resident_device = resident_device(s["device_resident"], device, dataset_bytes(dm))
            if dm.resident_device is not None:
                log.info("data resident on %s (%.2f GB)", dm.resident_device, dataset_bytes(dm) / 1e9)
