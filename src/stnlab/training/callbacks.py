"""Small training callbacks that Lightning does not ship in the form we need."""

from __future__ import annotations

import logging
import time

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint

log = logging.getLogger(__name__)


class EpochCheckpoints(ModelCheckpoint):
    """Keeps every epoch's weights (``checkpoint.every_epoch``) beside the run's own checkpoint, which in a run
    without validation is also unmonitored: Lightning keys a checkpoint callback's state by its monitor and
    cadence, so the two would collide without a key of their own."""

    def __init__(self, dirpath: str) -> None:
        super().__init__(
            dirpath=dirpath,
            filename="epoch-{epoch:02d}",
            monitor=None,
            save_top_k=-1,
            auto_insert_metric_name=False,
            enable_version_counter=False,
        )

    @property
    def state_key(self) -> str:
        return self._generate_state_key(every_epoch=True)


class EpochThroughput(pl.Callback):
    """Logs ``perf/train_img_per_s`` (images per second of wall time) for every training epoch, and
    ``time/elapsed_min``, the wall minutes since fit started, validation included (time-to-accuracy curves).
    A resumed run counts from its own start.

    Also ``perf/train_img_per_cpu_s``: images per second of this process's CPU time (all its threads). Other
    processes on the machine slow the wall-clock figure but hardly this one, so a sweep projects a run's
    length alone on the machine from it."""

    def __init__(self):
        self.images = 0
        self.start = 0.0
        self.cpu_start = 0.0
        self.fit_start: float | None = None
        self.last: float | None = None
        self.last_cpu: float | None = None

    def on_train_start(self, trainer, pl_module):  # a run resumed mid-epoch gets no on_train_epoch_start
        self.images, self.start, self.cpu_start = 0, time.perf_counter(), time.process_time()
        self.fit_start = self.start

    def on_train_epoch_start(self, trainer, pl_module):
        self.images, self.start, self.cpu_start = 0, time.perf_counter(), time.process_time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.images += len(batch[1])

    def on_train_epoch_end(self, trainer, pl_module):
        elapsed, cpu = time.perf_counter() - self.start, time.process_time() - self.cpu_start
        if elapsed > 0 and self.images:
            self.last = self.images * trainer.world_size / elapsed
            pl_module.log("perf/train_img_per_s", self.last, rank_zero_only=True)
        if cpu > 0 and self.images:
            self.last_cpu = self.images / cpu  # this process's own images: per rank
            pl_module.log("perf/train_img_per_cpu_s", self.last_cpu, rank_zero_only=True)
        if self.fit_start is not None:  # on_train_epoch_end runs after the epoch's validation
            pl_module.log("time/elapsed_min", (time.perf_counter() - self.fit_start) / 60, rank_zero_only=True)


class RunTimeEstimate(pl.Callback):
    """One log line, ``after_s`` seconds into training: how long an epoch and the whole run will take on this
    machine at the speed measured so far, and how to get a shorter run. Validation time is not included."""

    def __init__(self, after_s: float = 30.0, min_batches: int = 5, experiment: str | None = None):
        self.after_s, self.min_batches = after_s, min_batches
        self.shorter = shorter_runs(experiment)
        self.start: float | None = None
        self.batches = 0
        self.done = False

    def on_train_epoch_start(self, trainer, pl_module):
        if self.start is None:
            self.start, self.batches = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.done or self.start is None:
            return
        self.batches += 1
        elapsed = time.perf_counter() - self.start
        per_epoch = trainer.num_training_batches
        if self.batches < self.min_batches or (elapsed < self.after_s and self.batches < per_epoch):
            return
        self.done = True
        if not trainer.is_global_zero or not isinstance(per_epoch, int) or per_epoch <= 0:
            return
        epoch_min = elapsed / self.batches * per_epoch / 60
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
        total_min = epoch_min * epochs if epochs else 0.0
        total = f", about {total_min:.{0 if total_min >= 10 else 1}f} min for {epochs} epochs" if epochs else ""
        rate = self.batches * len(batch[1]) * trainer.world_size / elapsed
        log.info(
            "speed: %.0f img/s here, about %.1f min per epoch (training only)%s; %s",
            rate,
            epoch_min,
            total,
            self.shorter,
        )


def shorter_runs(experiment: str | None) -> str:
    """The speed line's advice; the CPU recipe is suggested only to runs that are not already it."""
    ways = ["trainer.max_epochs=N", "debug=limit"]
    if experiment != "compact":
        ways.append("experiment=compact (~15 min on 2 CPU cores)")
    return "shorter runs: " + ", ".join(ways[:-1]) + ", or " + ways[-1]
