"""A Lightning callback that shows what every ST does, epoch by epoch."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import WandbLogger
from PIL import Image

from stnlab.viz.panels import panel_grid, write_gif
from stnlab.viz.trace import trace_sts

log = logging.getLogger(__name__)


class STPanels(pl.Callback):
    """Every ``every_n_epochs`` validation epochs, draws each ST's panels for the first ``n`` validation
    images (a fixed set, taken from the first validation batch) and logs them to W&B as
    ``st/<st name>`` (a ``wandb.Image``); at the end of fitting, writes the frames of each ST
    as an animated GIF and logs it as ``st/<st name>_evolution`` (a ``wandb.Video``, W&B's
    media type for GIFs). PNGs and GIFs are also written under ``<run dir>/<dirname>/``.

    Enable with ``callbacks=[default,st_panels]`` (``conf/callbacks/st_panels.yaml``).
    """

    def __init__(
        self,
        n: int = 8,
        cols: int = 4,
        scale: int = 4,
        every_n_epochs: int = 1,
        gif: bool = True,
        gif_duration_ms: int = 500,
        dirname: str = "st_panels",
    ):
        self.n, self.cols, self.scale, self.every = n, cols, scale, max(1, every_n_epochs)
        self.gif, self.gif_duration_ms, self.dirname = gif, gif_duration_ms, dirname
        self.images: torch.Tensor | None = None
        self.frames: dict[str, list[Image.Image]] = {}
        self.written: list[Path] = []

    def _dir(self, trainer) -> Path:
        return Path(trainer.default_root_dir) / self.dirname

    @staticmethod
    def _wandb(trainer) -> WandbLogger | None:
        return next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if self.images is None and batch_idx == 0 and dataloader_idx == 0:
            self.images = batch[0][: self.n].detach().cpu().clone()

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking or self.images is None or not trainer.is_global_zero:
            return
        if trainer.current_epoch % self.every:
            return
        wb = self._wandb(trainer)
        for view in trace_sts(pl_module, self.images):
            grid = panel_grid(view, self.cols, self.scale)
            self.frames.setdefault(view.name, []).append(grid)
            path = self._dir(trainer) / view.name / f"epoch_{trainer.current_epoch:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            grid.save(path)
            self.written.append(path)
            if wb is not None:
                wb.log_image(
                    f"st/{view.name}",
                    [grid],
                    step=trainer.global_step,
                    caption=[f"epoch {trainer.current_epoch}: input with sampled region | ST output"],
                )

    def on_fit_end(self, trainer, pl_module):
        if not (self.gif and trainer.is_global_zero):
            return
        wb = self._wandb(trainer)
        for name, frames in self.frames.items():
            path = write_gif(frames, self._dir(trainer) / f"{name}.gif", self.gif_duration_ms)
            self.written.append(path)
            log.info("ST %s over %d epochs: %s", name, len(frames), path)
            if wb is not None:
                import wandb  # heavy to import (seconds): only the code that logs to W&B loads it

                wb.log_metrics({f"st/{name}_evolution": wandb.Video(str(path), format="gif")}, step=trainer.global_step)
