"""One training run from a composed Hydra config: the code path of ``train.py`` and of every sweep trial."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint, WeightAveraging
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from stnlab.run_dirs import check_run_dir_free, run_dir_of
from stnlab.tracking.checkpoint_io import NO_ROOM, AtomicCheckpointIO, no_room
from stnlab.tracking.csv_logger import ContinuingCSVLogger
from stnlab.tracking.wandb_logger import flat_config, make_wandb_logger, write_summary
from stnlab.training.callbacks import EpochThroughput
from stnlab.training.checks import RUN_METRICS, VAL_EPOCH_METRICS, build, sense, validate  # noqa: F401 - re-exported
from stnlab.training.module import build_module
from stnlab.training.resume import check_compatible, resolve_resume
from stnlab.training.speed import SpeedSwitches

log = logging.getLogger(__name__)


def train(cfg: DictConfig, extra_callbacks: list | None = None) -> dict[str, Any]:
    """Fit, then test the best checkpoint (when test labels exist). Returns the final metrics."""
    resolved: dict = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    validate(resolved)
    # resume=last|PATH: the checkpoint and its run directory, which the resumed run writes into.
    ckpt_path, resumed_dir = resolve_resume(resolved.get("resume"), resolved.get("run_dir"))
    run_dir = Path(cfg.run_dir) if cfg.get("run_dir") else resumed_dir or run_dir_of(cfg)
    pl.seed_everything(resolved.get("seed", 0), workers=True, verbose=False)

    module = build_module(resolved)
    if ckpt_path is not None:
        check_compatible(ckpt_path, resolved)
        log.info("resuming from %s into %s", ckpt_path, run_dir)
    elif rank_zero_only.rank == 0:  # DDP workers share rank 0's folder
        check_run_dir_free(run_dir)
    datamodule = build(resolved["data"], "data")
    run_dir.mkdir(parents=True, exist_ok=True)  # only once every value was checked

    speed = SpeedSwitches(resolved.get("speed"))  # checks the speed: section before any run is opened
    wandb_logger = make_wandb_logger(resolved, run_dir)
    try:
        metrics = _fit_and_test(resolved, module, datamodule, run_dir, ckpt_path, wandb_logger, speed, extra_callbacks)
    except OSError as e:
        _close_wandb(wandb_logger, exit_code=1)
        if e.errno in NO_ROOM:  # the CSV log, metrics.json, ... on a full disk: one line, not a traceback
            raise no_room(run_dir, e.filename or run_dir, e.strerror or str(e)) from None
        raise
    except BaseException:
        _close_wandb(wandb_logger, exit_code=1)
        raise
    _close_wandb(wandb_logger, exit_code=0)
    return metrics


def write_atomically(path: Path, text: str) -> None:
    """``path`` holds the whole text or is absent (``compare.py`` never reads half a metrics.json)."""
    tmp = path.with_name(f".{path.name}.part")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _close_wandb(wandb_logger, exit_code: int) -> None:
    # Always close the W&B run: Lightning's WandbLogger would otherwise adopt the dangling run
    # (wandb.run) in the next train() of this process, e.g. the next sweep trial.
    if wandb_logger is not None and wandb_logger._experiment is not None:
        try:
            wandb_logger.experiment.finish(exit_code=exit_code)
        except Exception as e:  # noqa: BLE001 - the run's own files are written: W&B's trouble is a warning
            log.warning("W&B: closing the run failed (%s: %s); metrics.json and the CSV log are complete",
                        type(e).__name__, (str(e).strip().splitlines() or [""])[0][:300])


def _fit_and_test(resolved, module, datamodule, run_dir, ckpt_path, wandb_logger, speed, extra_callbacks):
    # A resumed run logs beside the earlier part (CSVLogger would delete csv/metrics.csv): csv/resume-<k>/.
    csv_version = f"resume-{len(list((run_dir / 'csv').glob('resume-*'))) + 1}" if ckpt_path is not None else ""
    # Continuing: under trainer=ddp_cpu (ddp_spawn) the test stage gets a fresh writer, which would delete the file.
    loggers = [ContinuingCSVLogger(str(run_dir), name="csv", version=csv_version)]
    loggers[0].log_hyperparams(flat_config(resolved))  # csv/hparams.yaml; W&B got it when its run opened
    if wandb_logger is not None:
        loggers.append(wandb_logger)
    checkpoint = ModelCheckpoint(
        dirpath=str(run_dir / "checkpoints"), filename="best-{epoch:02d}", monitor="val/acc", mode="max",
        save_last=True, auto_insert_metric_name=False, enable_version_counter=False,
    )
    # last.ckpt also every N training steps, so that a killed run resumes mid-epoch (resume=last).
    every = int((resolved.get("checkpoint") or {}).get("every_n_train_steps") or 0)
    step_checkpoints = [ModelCheckpoint(dirpath=str(run_dir / "checkpoints"), save_top_k=0, save_last=True,
                                        every_n_train_steps=every, enable_version_counter=False)] if every else []
    throughput = EpochThroughput()
    callbacks = [checkpoint, *step_checkpoints, throughput] + [build(c, "callbacks") for c in (resolved.get("callbacks") or {}).values() if c]
    callbacks += extra_callbacks or []
    callbacks.append(speed)  # the speed: section (stnlab.training.speed)
    trainer: pl.Trainer = build(resolved["trainer"], "trainer", logger=loggers, callbacks=callbacks,
                                      default_root_dir=str(run_dir), plugins=[AtomicCheckpointIO()])

    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path is not None else None)
    fit_seconds = time.perf_counter() - start

    metrics: dict[str, Any] = {}
    # After trainer.strategy=ddp_spawn the fit ran in worker processes: only callback_metrics came back.
    done = trainer.callback_metrics
    if module.val_acc_best.update_called:
        metrics["val/acc_best"] = float(module.val_acc_best.compute())
    elif "val/acc_best" in done:
        metrics["val/acc_best"] = float(done["val/acc_best"])
    if datamodule.train is None:  # fitted in spawned workers: load here to learn whether test labels exist
        datamodule.setup("test")
    if datamodule.has_test:
        ckpt = checkpoint.best_model_path or None  # this callback's best (Lightning's "best" warns with two callbacks)
        # A checkpoint's state_dict holds the averaged weights (+callbacks=ema), the ones validated and chosen;
        # WeightAveraging.on_load_checkpoint would put the raw weights of that epoch back before the test.
        trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, WeightAveraging)]
        results = trainer.test(module, datamodule=datamodule, ckpt_path=ckpt, verbose=False)
        metrics.update({k: float(v) for k, v in results[0].items()} if results else {})
    metrics["time/fit_s"] = fit_seconds
    metrics["model/params"] = sum(p.numel() for p in module.net.parameters())
    if throughput.last is not None:
        metrics["perf/train_img_per_s"] = throughput.last
    elif "perf/train_img_per_s" in done:
        metrics["perf/train_img_per_s"] = float(done["perf/train_img_per_s"])
    if checkpoint.best_model_path:
        metrics["best_checkpoint"] = checkpoint.best_model_path
    if trainer.is_global_zero:
        write_atomically(run_dir / "metrics.json", json.dumps(metrics, indent=2))  # first: W&B is a copy of it
        try:
            write_summary(wandb_logger, {k: v for k, v in metrics.items() if k != "best_checkpoint"})
        except Exception as e:  # noqa: BLE001 - as for _close_wandb
            log.warning("W&B: the summary was not written (%s: %s); metrics.json is complete",
                        type(e).__name__, (str(e).strip().splitlines() or [""])[0][:300])
        log.info("finished: %s", {k: v for k, v in metrics.items() if k != "best_checkpoint"})
    return metrics
