"""One training run from a composed Hydra config: the code path of ``train.py`` and of every sweep trial."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, OmegaConf

from stnlab.callbacks import EpochThroughput
from stnlab.errors import ConfigError
from stnlab.tracking.wandb_logger import make_wandb_logger, write_summary
from stnlab.training.module import STNModule

log = logging.getLogger(__name__)


def validate(cfg: dict) -> None:
    """Reject invalid values before any work starts (one clear line each)."""
    lr = cfg["optim"].get("lr")
    if lr is None or float(lr) <= 0:
        raise ConfigError(f"optim.lr={lr} must be positive (the reference uses 0.01)")
    for key in ("batch_size", "eval_batch_size"):
        v = cfg["data"].get(key)
        if v is not None and int(v) <= 0:
            raise ConfigError(f"data.{key}={v} must be a positive integer (the reference uses 50)")
    size = int(cfg["data"].get("image_size", 48))
    if size < 8:
        raise ConfigError(f"data.image_size={size} is too small; use at least 8 (the reference uses 48)")
    scale = cfg["model"].get("locnet_lr_scale", 1.0)
    if scale is not None and float(scale) < 0:
        raise ConfigError(f"model.locnet_lr_scale={scale} must be >= 0")


def build_module(cfg: dict) -> STNModule:
    try:
        return STNModule(cfg)
    except ValueError as e:  # shape problems found while building the network
        raise ConfigError(f"{e}; change model.* or data.image_size") from None


def run_dir_of(cfg: DictConfig) -> Path:
    from hydra.core.hydra_config import HydraConfig

    if cfg.get("run_dir"):
        return Path(cfg.run_dir)
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path("outputs") / "runs" / time.strftime("%Y-%m-%d_%H-%M-%S")


def train(cfg: DictConfig, extra_callbacks: list | None = None) -> dict[str, Any]:
    """Fit, then test the best checkpoint (when test labels exist). Returns the final metrics."""
    resolved: dict = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    validate(resolved)
    run_dir = run_dir_of(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(resolved.get("seed", 0), workers=True, verbose=False)

    module = build_module(resolved)
    datamodule = instantiate(resolved["data"])

    wandb_logger = make_wandb_logger(resolved, run_dir)
    loggers = [CSVLogger(str(run_dir), name="csv", version="")]
    if wandb_logger is not None:
        loggers.append(wandb_logger)
    checkpoint = ModelCheckpoint(
        dirpath=str(run_dir / "checkpoints"), filename="best-{epoch:02d}", monitor="val/acc", mode="max",
        save_last=True, auto_insert_metric_name=False,
    )
    throughput = EpochThroughput()
    callbacks = [checkpoint, throughput] + [instantiate(c) for c in (resolved.get("callbacks") or {}).values()]
    callbacks += extra_callbacks or []
    trainer: pl.Trainer = instantiate(resolved["trainer"], logger=loggers, callbacks=callbacks,
                                      default_root_dir=str(run_dir))

    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=resolved.get("resume"))
    fit_seconds = time.perf_counter() - start

    metrics: dict[str, Any] = {}
    if module.val_acc_best.update_called:
        metrics["val/acc_best"] = float(module.val_acc_best.compute())
    if datamodule.has_test:
        ckpt = "best" if checkpoint.best_model_path else None
        results = trainer.test(module, datamodule=datamodule, ckpt_path=ckpt, verbose=False)
        metrics.update({k: float(v) for k, v in results[0].items()} if results else {})
    metrics["time/fit_s"] = fit_seconds
    metrics["model/params"] = sum(p.numel() for p in module.net.parameters())
    if throughput.last is not None:
        metrics["perf/train_img_per_s"] = throughput.last
    if checkpoint.best_model_path:
        metrics["best_checkpoint"] = checkpoint.best_model_path
    if trainer.is_global_zero:
        write_summary(wandb_logger, {k: v for k, v in metrics.items() if k != "best_checkpoint"})
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        log.info("finished: %s", {k: v for k, v in metrics.items() if k != "best_checkpoint"})
    if wandb_logger is not None:
        wandb_logger.experiment.finish()
    return metrics
