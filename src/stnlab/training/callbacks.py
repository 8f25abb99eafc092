"""Small training callbacks that Lightning does not ship in the form we need."""

from __future__ import annotations

import time

import lightning.pytorch as pl


class EpochThroughput(pl.Callback):
    """Logs ``perf/train_img_per_s`` (images per second of wall time) for every training epoch, and
    ``time/elapsed_min``, the wall minutes since fit started, validation included (time-to-accuracy curves).
    A resumed run counts from its own start."""

    def __init__(self):
        self.images = 0
        self.start = 0.0
        self.fit_start: float | None = None
        self.last: float | None = None

    def on_train_start(self, trainer, pl_module):  # a run resumed mid-epoch gets no on_train_epoch_start
        self.images, self.start = 0, time.perf_counter()
        self.fit_start = self.start

    def on_train_epoch_start(self, trainer, pl_module):
        self.images, self.start = 0, time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.images += len(batch[1])

    def on_train_epoch_end(self, trainer, pl_module):
        elapsed = time.perf_counter() - self.start
        if elapsed > 0 and self.images:
            self.last = self.images * trainer.world_size / elapsed
            pl_module.log("perf/train_img_per_s", self.last, rank_zero_only=True)
        if self.fit_start is not None:  # on_train_epoch_end runs after the epoch's validation
            pl_module.log("time/elapsed_min", (time.perf_counter() - self.fit_start) / 60, rank_zero_only=True)
