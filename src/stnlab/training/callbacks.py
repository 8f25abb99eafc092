"""Small training callbacks that Lightning does not ship in the form we need."""

from __future__ import annotations

import logging
import time

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint, ThroughputMonitor
from lightning.pytorch.trainer.states import RunningStage
from lightning.pytorch.utilities import rank_zero_only

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


def images_in(batch) -> int:
    """The images of an ``(images, labels)`` batch: ThroughputMonitor's ``batch_size_fn``."""
    return len(batch[1])


class EpochThroughput(ThroughputMonitor):
    """Lightning's ThroughputMonitor, which logs ``train/samples``, ``train/time`` (training only: it takes
    validation out) and, once ``window_size`` batches were seen, ``train/device/samples_per_sec`` at every logged
    step (``validate/...`` and ``test/...`` likewise). On top, per training epoch:

    - ``perf/train_img_per_s``: the epoch's images per second of the monitor's training time, all processes;
    - ``perf/train_img_per_cpu_s``: its images per second of this process's CPU time (all its threads, the epoch's
      validation included). Other processes on the machine slow the wall-clock figure but hardly this one, so a
      sweep projects a run's length alone on the machine from it;
    - ``time/elapsed_min``: wall minutes since fit started, validation included (time-to-accuracy curves).

    A resumed run counts from its own start."""

    def __init__(self, window_size: int = 100) -> None:
        super().__init__(batch_size_fn=images_in, window_size=window_size)
        self.fit_start = 0.0
        self.mark = (0, 0.0, 0.0)  # samples, training seconds and CPU seconds at the end of the last epoch

    @rank_zero_only
    def on_train_start(self, trainer, pl_module):  # a run resumed mid-epoch gets no on_train_epoch_start
        super().on_train_start(trainer, pl_module)
        self.fit_start = time.perf_counter()
        self.mark = (0, 0.0, time.process_time())

    @rank_zero_only
    def on_train_epoch_end(self, trainer, pl_module):  # after the epoch's validation
        # The monitor logs past callback_metrics, where train() and the sweeps read a run's speed, per step over a
        # window of batches, and without CPU time: the epoch's figures come from its running totals.
        pl_module.log("time/elapsed_min", (time.perf_counter() - self.fit_start) / 60, rank_zero_only=True)
        samples, seconds, cpu = self._samples.get(RunningStage.TRAINING, 0), self.mark[1], time.process_time()
        if samples > self.mark[0]:
            seconds = self._throughputs[RunningStage.TRAINING].compute()["time"]
            images = samples - self.mark[0]
            rate = images * trainer.world_size / (seconds - self.mark[1])
            pl_module.log("perf/train_img_per_s", rate, rank_zero_only=True)
            if cpu > self.mark[2]:
                pl_module.log("perf/train_img_per_cpu_s", images / (cpu - self.mark[2]), rank_zero_only=True)
        self.mark = (samples, seconds, cpu)


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
        ways.append("experiment=compact (~8 min on 2 CPU cores)")
    return "shorter runs: " + ", ".join(ways[:-1]) + ", or " + ways[-1]
