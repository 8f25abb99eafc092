"""One training run from a composed Hydra config: the code path of ``train.py`` and of every sweep trial."""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import ModelCheckpoint, WeightAveraging
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from stnlab.callbacks import EpochThroughput
from stnlab.errors import ConfigError, StnlabError
from stnlab.perf import SpeedSwitches
from stnlab.tracking.checkpoint_io import NO_ROOM, AtomicCheckpointIO, no_room
from stnlab.tracking.csv_logger import ContinuingCSVLogger
from stnlab.reliability import check_compatible, check_run_dir_free, claim_run_dir, resolve_resume
from stnlab.tracking.wandb_logger import make_wandb_logger, write_summary
from stnlab.training.module import STNModule, build_module

log = logging.getLogger(__name__)

# The numbers train() returns (and writes to metrics.json), from _fit_and_test below; test/* exist only where
# the data has test labels, test/f1_macro only with callbacks.test_report. A sweep's `metric` must be one.
RUN_METRICS = ("val/acc_best", "test/acc", "test/loss", "test/f1_macro", "time/fit_s", "model/params",
               "perf/train_img_per_s")
# What STNModule logs at the end of every validation epoch: what a sweep's pruner (`monitor`) can see there.
VAL_EPOCH_METRICS = ("val/acc", "val/loss", "val/acc_best")


def sense(metric: str) -> str:
    """``minimize`` for losses and times, ``maximize`` for accuracies, F1, throughput; ``""`` when neither."""
    if metric.endswith(("acc", "acc_best", "f1_macro", "img_per_s")):  # before "_s": img_per_s is a rate
        return "maximize"
    if metric.endswith(("loss", "_s")) or metric == "model/params":
        return "minimize"
    return ""


def _number(key: str, value: Any, kind=float):
    """``kind(value)``, or a ConfigError naming the key (``data.batch_size=abc`` is not a number)."""
    try:
        number = float(value)
        if isinstance(value, bool) or not math.isfinite(number) or (kind is int and number != int(number)):
            raise ValueError
        return kind(number)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}={value} is not {'an integer' if kind is int else 'a number'}; "
                          f"set {key}=<{'integer' if kind is int else 'number'}>") from None


def validate(cfg: dict) -> None:
    """Reject invalid values before any work starts (one clear line each)."""
    lr = cfg["optim"].get("lr")
    if lr is None or _number("optim.lr", lr) <= 0:
        raise ConfigError(f"optim.lr={lr} must be positive (the reference uses 0.01)")
    for key in ("batch_size", "eval_batch_size"):
        v = cfg["data"].get(key)
        if v is not None and _number(f"data.{key}", v, int) <= 0:
            raise ConfigError(f"data.{key}={v} must be a positive integer (the reference uses 50)")
    for key, least in (("download_retries", 1), ("download_timeout", 1e-9)):
        v = cfg["data"].get(key)
        if v is not None and _number(f"data.{key}", v) < least:
            raise ConfigError(f"data.{key}={v} must be positive (the default is {3 if key == 'download_retries' else 30})")
    every = (cfg.get("checkpoint") or {}).get("every_n_train_steps")
    if every is not None and _number("checkpoint.every_n_train_steps", every, int) < 0:
        raise ConfigError(f"checkpoint.every_n_train_steps={every} must be >= 0 (0 or null: only at epoch ends)")
    size = _number("data.image_size", cfg["data"].get("image_size", 48), int)
    if size < 8:
        raise ConfigError(f"data.image_size={size} is too small; use at least 8 (the reference uses 48)")
    scale = cfg["model"].get("locnet_lr_scale", 1.0)
    if scale is not None and _number("model.locnet_lr_scale", scale) < 0:
        raise ConfigError(f"model.locnet_lr_scale={scale} must be >= 0")
    seed = cfg.get("seed", 0)
    if seed is not None and not 0 <= _number("seed", seed, int) < 2**32:
        raise ConfigError(f"seed={seed} must be in 0..{2**32 - 1}")
    workers = cfg["data"].get("num_workers")
    if workers is not None and _number("data.num_workers", workers, int) < 0:
        raise ConfigError(f"data.num_workers={workers} must be >= 0 (0: load in the main process)")
    for section in ("optim", "scheduler"):
        check_arguments(cfg.get(section), section)
    check_budget(cfg)
    trainer = cfg.get("trainer") or {}
    if trainer.get("deterministic") is True and (cfg["model"].get("transformers") or cfg.get("augment")):
        import torch

        if str(trainer.get("accelerator", "auto")) in ("gpu", "cuda") or (
                str(trainer.get("accelerator", "auto")) == "auto" and torch.cuda.is_available()):
            raise ConfigError("trainer.deterministic=true cannot run on a GPU: grid_sample (STs, jitter) has no "
                              "deterministic CUDA backward; use trainer.deterministic=warn, or train on the CPU")


def check_arguments(node: dict | None, section: str, own: tuple[str, ...] = ("interval", "monitor")) -> None:
    """Every key of an ``optim``/``scheduler`` node is an argument of its ``_target_`` (``+optim.foo=1`` would
    otherwise fail with a TypeError when the optimizer is built, after the data was loaded)."""
    if not node or "_target_" not in node:
        return
    try:
        target = _locate(str(node["_target_"]))
        params = inspect.signature(target).parameters
    except (ImportError, ValueError, TypeError) as e:
        raise ConfigError(f"{section}._target_={node['_target_']} cannot be used ({e}); fix the {section} choice") from None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    allowed = set(params) | {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"} | set(own)
    unknown = sorted(set(node) - allowed)
    if unknown:
        known = ", ".join(k for k in params if k not in ("params", "optimizer", "self"))
        raise ConfigError(f"{section}.{unknown[0]} is not an argument of {node['_target_']} (it takes {known}); "
                          f"drop the {section}.{unknown[0]} override")


def check_budget(cfg: dict) -> None:
    """A run must train and validate: no epoch (or step, or training batch) would test the untrained weights;
    no validation leaves no best checkpoint, so the test uses the last weights, which is said once."""
    trainer = cfg.get("trainer") or {}
    for key in ("max_epochs", "max_steps"):
        v = trainer.get(key)
        if v is not None and (_number(f"trainer.{key}", v, int) == 0 or int(v) < -1):
            raise ConfigError(f"trainer.{key}={v} trains nothing: the test would measure untrained weights; "
                              f"set trainer.{key} >= 1 (-1: no limit)")
    for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches"):
        v = trainer.get(key)
        if v is None:
            continue
        if _number(f"trainer.{key}", v) < 0:
            raise ConfigError(f"trainer.{key}={v} must be >= 0 (a fraction <= 1.0 or a number of batches)")
        if float(v) == 0 and key == "limit_train_batches":
            raise ConfigError("trainer.limit_train_batches=0 trains nothing: the test would measure untrained "
                              "weights; set it > 0")
    no_val = [f"trainer.limit_val_batches={trainer['limit_val_batches']}"] if trainer.get("limit_val_batches") is not None \
        and float(trainer["limit_val_batches"]) == 0 else []
    data = cfg.get("data") or {}
    for key in ("val_tracks_per_class", "num_val"):
        if data.get(key) is not None and _number(f"data.{key}", data[key], int) == 0:
            no_val.append(f"data.{key}=0")
    if no_val:
        log.warning("%s: no validation, so no val/acc_best and no best checkpoint; the test (if any) measures the "
                    "last epoch's weights", " and ".join(no_val))


def _locate(path: str):
    from hydra.utils import get_class, get_method

    try:
        return get_class(path)
    except Exception:  # noqa: BLE001 - a function target (optim given as a factory)
        try:
            return get_method(path)
        except Exception as e:  # noqa: BLE001
            raise ImportError(str(e).splitlines()[0] if str(e) else path) from None


def _instantiate(node: dict, section: str, **kwargs):
    """``instantiate``, with a user error inside (a StnlabError, or a bad value or argument for the trainer)
    raised as one line rather than Hydra's wrapped traceback."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, StnlabError):
            raise cause from None
        if cause is not None and isinstance(cause, (ValueError, TypeError, MisconfigurationException)):
            first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
            raise ConfigError(f"{section}: {first}; fix the {section}.* override") from None
        raise


def run_dir_of(cfg: DictConfig) -> Path:
    from hydra.core.hydra_config import HydraConfig

    if cfg.get("run_dir"):
        return Path(cfg.run_dir)
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(claim_run_dir(Path("outputs") / "runs" / time.strftime("%Y-%m-%d_%H-%M-%S")))


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
    datamodule = _instantiate(resolved["data"], "data")
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
    callbacks = [checkpoint, *step_checkpoints, throughput] + [instantiate(c) for c in (resolved.get("callbacks") or {}).values() if c]
    callbacks += extra_callbacks or []
    callbacks.append(speed)  # the speed: section (stnlab.perf)
    trainer: pl.Trainer = _instantiate(resolved["trainer"], "trainer", logger=loggers, callbacks=callbacks,
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
