"""Lightning's CSV logger, continuing an existing ``metrics.csv`` instead of deleting it.

A new CSV writer deletes ``metrics.csv`` when its folder is not empty. A run makes a new
writer for each stage when ``trainer.strategy=ddp_spawn`` (``trainer=ddp_cpu``) runs fit and
test in fresh worker processes: the test stage would delete the training log. This writer
keeps the file and its columns (a new column rewrites the header over every earlier row).
"""

from __future__ import annotations

import csv
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment


class _ContinuingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = sorted(next(csv.reader(f), []))


class ContinuingCSVLogger(CSVLogger):
    """``<save_dir>/<name>/metrics.csv``; when that file already holds an earlier part of the run (a resumed
    run), this part logs beside it in ``<name>/resume-<k>/``."""

    def __init__(self, save_dir: str, name: str = "csv", version: str | None = None, **kwargs):
        if version is None:
            folder = Path(save_dir) / name
            version = f"resume-{len(list(folder.glob('resume-*'))) + 1}" if (folder / "metrics.csv").is_file() else ""
        super().__init__(save_dir, name=name, version=version, **kwargs)

    def __getstate__(self) -> dict:
        # A process that gets this logger (ddp_spawn's workers) opens the file itself: a writer made here
        # would carry this moment's columns, and write its rows under a stale header.
        return {**self.__dict__, "_experiment": None}

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuingWriter(log_dir=self.log_dir)
        return self._experiment
