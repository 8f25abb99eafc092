"""Lightning callback: the evaluation report of the test stage, written to the run and logged to its loggers.

Enabled for every training run by ``callbacks.test_report`` in ``conf/train.yaml``.
On test end it logs ``test/f1_macro`` (so it reaches ``metrics.json``, the CSV log
and the W&B summary), writes ``<run_dir>/eval/test_report.json`` with the two PNGs,
and logs the confusion matrix, the error table (with images) and the PNGs to W&B.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import WandbLogger

from stnlab.errors import described
from stnlab.evaluation.files import write_report
from stnlab.evaluation.metrics import ReportBuilder
from stnlab.evaluation.wandb_media import report_media

log = logging.getLogger(__name__)


class TestReport(pl.Callback):
    """Args: ``max_errors`` images kept for the gallery; ``out_dir`` (default ``<default_root_dir>/eval``)."""

    def __init__(self, max_errors: int = 32, out_dir: str | None = None, log_media: bool = True):
        self.max_errors, self.out_dir, self.log_media = max_errors, out_dir, log_media
        self.builder: ReportBuilder | None = None
        self.paths: dict[str, Path] = {}

    def on_test_epoch_start(self, trainer, pl_module):
        names = getattr(getattr(trainer, "datamodule", None), "class_names", None)
        self.builder = ReportBuilder(pl_module.num_classes, self.max_errors, names).to(pl_module.device)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        images, labels = batch
        logits = outputs if isinstance(outputs, torch.Tensor) else pl_module(images)
        self.builder.update(logits, labels, images)

    def on_test_epoch_end(self, trainer, pl_module):
        if self.builder is None or self.builder.seen == 0:
            return
        report = self.builder.compute()  # synchronised across processes
        pl_module.log("test/f1_macro", report.f1_macro)
        if not trainer.is_global_zero:
            return
        out_dir = Path(self.out_dir) if self.out_dir else Path(trainer.default_root_dir) / "eval"
        self.paths = write_report(
            report, out_dir, "test", meta={"source": "test stage", "checkpoint": getattr(trainer, "ckpt_path", None)}
        )
        log.info("test report: %s", self.paths["json"])
        if self.log_media:
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    self._log_media(logger, report, trainer.global_step)

    def _log_media(self, logger: WandbLogger, report, step: int) -> None:
        # The media are a copy of what is on disk already: a W&B environment problem (an unwritable
        # WANDB_DATA_DIR, where W&B stages table images; a full disk) must not throw the finished run away.
        try:
            media = report_media(report, "test", self.paths)
            logger.experiment.log({**media, "trainer/global_step": step})
        except Exception as e:  # noqa: BLE001 - any failure of W&B's media staging
            error = described(e, 300)
            log.warning(
                "W&B: the test report's media were not logged (%s); the report is in %s", error, self.paths["json"]
            )
