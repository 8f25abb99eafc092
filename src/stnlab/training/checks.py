"""Checks of a run config before any work starts (one clear line each), and building its parts."""

from __future__ import annotations

import inspect
import logging
import math
import os
from datetime import timedelta
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException

from stnlab.errors import ConfigError, StnlabError, first_line

log = logging.getLogger(__name__)

# The numbers train() returns (and writes to metrics.json), from _fit_and_test below; test/* exist only where
# the data has test labels, test/f1_macro only with callbacks.test_report. A sweep's `metric` must be one.
RUN_METRICS = (
    "val/acc_best",
    "val/acc_weighted_best",
    "val/acc_weighted",
    "val/acc",
    "test/acc",
    "test/loss",
    "test/f1_macro",
    "time/fit_s",
    "model/params",
    "perf/train_img_per_s",
    "perf/train_img_per_cpu_s",
    "data/train_images",
    "data/val_images",
    "data/test_images",
)
# What STNModule logs at the end of every validation epoch: what a sweep's pruner (`monitor`) can see there.
VAL_EPOCH_METRICS = ("val/acc", "val/loss", "val/acc_best", "val/acc_weighted", "val/acc_weighted_best")


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
        raise ConfigError(
            f"{key}={value} is not {'an integer' if kind is int else 'a number'}; "
            f"set {key}=<{'integer' if kind is int else 'number'}>"
        ) from None


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
            raise ConfigError(
                f"data.{key}={v} must be positive (the default is {3 if key == 'download_retries' else 30})"
            )
    every = (cfg.get("checkpoint") or {}).get("every_n_train_steps")
    if every is not None and _number("checkpoint.every_n_train_steps", every, int) < 0:
        raise ConfigError(f"checkpoint.every_n_train_steps={every} must be >= 0 (0 or null: only at epoch ends)")
    size = _number("data.image_size", cfg["data"].get("image_size", 48), int)
    if size < 8:
        raise ConfigError(f"data.image_size={size} is too small; use at least 8 (the reference uses 48)")
    scale = cfg["module"].get("locnet_lr_scale", 1.0)
    if scale is not None and _number("module.locnet_lr_scale", scale) < 0:
        raise ConfigError(f"module.locnet_lr_scale={scale} must be >= 0")
    seed = cfg.get("seed", 0)
    if seed is not None and not 0 <= _number("seed", seed, int) < 2**32:
        raise ConfigError(f"seed={seed} must be in 0..{2**32 - 1}")
    workers = cfg["data"].get("num_workers")
    if workers is not None and _number("data.num_workers", workers, int) < 0:
        raise ConfigError(f"data.num_workers={workers} must be >= 0 (0: load in the main process)")
    most = 4 * (os.cpu_count() or 1)  # each worker is a copy of this process (hundreds of MB): a swarm exhausts memory
    if workers is not None and int(workers) > most:
        raise ConfigError(
            f"data.num_workers={workers}: this machine has {os.cpu_count()} CPU cores, and each worker is a copy of "
            f"the training process; use at most {most} (0 loads in the main process)"
        )
    smoothing = cfg["module"].get("label_smoothing")
    if smoothing is not None and not 0 <= _number("module.label_smoothing", smoothing) <= 1:
        raise ConfigError(f"module.label_smoothing={smoothing} must be in 0..1 (0: none, the reference)")
    check_sizes(cfg["model"], "model")
    for section in ("optim", "scheduler"):
        check_arguments(cfg.get(section), section)
    check_budget(cfg)
    check_trainer(cfg.get("trainer") or {})
    trainer = cfg.get("trainer") or {}
    if trainer.get("deterministic") is True and (cfg["model"].get("transformers") or cfg.get("augment")):
        import torch

        if str(trainer.get("accelerator", "auto")) in ("gpu", "cuda") or (
            str(trainer.get("accelerator", "auto")) == "auto" and torch.cuda.is_available()
        ):
            raise ConfigError(
                "trainer.deterministic=true cannot run on a GPU: grid_sample (STs, jitter) has no "
                "deterministic CUDA backward; use trainer.deterministic=warn, or train on the CPU"
            )


# Sizes in the model node (backbone, localisation nets): a positive integer each, or a list of them.
SIZES = ("widths", "kernels", "kernel", "fc", "depth", "in_channels", "num_classes")


def check_sizes(node: dict, prefix: str) -> None:
    """Every size under ``node`` is positive (a negative width would fail deep in PyTorch with a traceback)."""
    for key, value in node.items():
        path = f"{prefix}.{key}"
        if isinstance(value, dict):
            check_sizes(value, path)
        elif key in SIZES and value is not None:
            values = value if isinstance(value, list) else [value]
            if not values or any(_number(path, v, int) < 1 for v in values):
                raise ConfigError(f"{path}={_shown(value)} must be positive integers (channels, units, kernel sizes)")
        elif key == "dropout" and value is not None and not 0 <= _number(path, value) < 1:
            raise ConfigError(f"{path}={value} must be in 0..1 (0: no dropout)")


def _shown(value: Any) -> str:
    return "[" + ",".join(str(v) for v in value) + "]" if isinstance(value, list) else str(value)


def check_trainer(trainer: dict) -> None:
    """Trainer values Lightning would take and then fail on mid-run (a division by zero, a hang)."""
    for key in ("accumulate_grad_batches", "check_val_every_n_epoch"):
        v = trainer.get(key)
        if v is not None and _number(f"trainer.{key}", v, int) < 1:
            raise ConfigError(f"trainer.{key}={v} must be an integer >= 1")
    interval = trainer.get("val_check_interval")
    if interval is not None and _number("trainer.val_check_interval", interval) <= 0:
        raise ConfigError(
            f"trainer.val_check_interval={interval} must be > 0: a fraction of the epoch (<= 1.0) or a number of batches"
        )
    accelerator = str(trainer.get("accelerator", "auto"))
    if accelerator not in ("auto", "cpu") and not _available(accelerator):
        raise ConfigError(
            f"trainer.accelerator={accelerator} is not available on this machine; use cpu or auto "
            "(a GPU when there is one)"
        )
    devices = trainer.get("devices")
    if accelerator == "cpu" and isinstance(devices, int) and not isinstance(devices, bool):
        cores = os.cpu_count() or 1
        if devices > cores:  # each is a process training on the CPU: more than the cores only thrash
            raise ConfigError(f"trainer.devices={devices}: this machine has {cores} CPU cores; use at most {cores}")


def _available(accelerator: str) -> bool:
    """Whether Lightning's accelerator of that name (``gpu`` is ``cuda``) can run here."""
    from lightning.pytorch.accelerators import AcceleratorRegistry

    name = "cuda" if accelerator == "gpu" else accelerator
    if name not in AcceleratorRegistry.available_accelerators():
        return True  # not a name Lightning registers (an object, a typo): Lightning says what is wrong
    return AcceleratorRegistry[name]["accelerator"].is_available()


def check_arguments(node: dict | None, section: str, own: tuple[str, ...] = ()) -> None:
    """Every key of an ``optim``/``scheduler`` node is an argument of its ``_target_`` (``+optim.foo=1`` would
    otherwise fail with a TypeError when the optimizer is built, after the data was loaded)."""
    if not node or "_target_" not in node:
        return
    try:
        target = _locate(str(node["_target_"]))
        params = inspect.signature(target).parameters
    except (ImportError, ValueError, TypeError) as e:
        raise ConfigError(
            f"{section}._target_={node['_target_']} cannot be used ({e}); fix the {section} choice"
        ) from None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    allowed = set(params) | {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"} | set(own)
    unknown = sorted(set(node) - allowed)
    if unknown:
        known = ", ".join(k for k in params if k not in ("params", "optimizer", "self"))
        raise ConfigError(
            f"{section}.{unknown[0]} is not an argument of {node['_target_']} (it takes {known}); "
            f"drop the {section}.{unknown[0]} override"
        )


def check_budget(cfg: dict) -> None:
    """A run must train and validate: no epoch (or step, or training batch) would test the untrained weights;
    no validation leaves no best checkpoint, so the test uses the last weights, which is said once."""
    trainer = cfg.get("trainer") or {}
    for key in ("max_epochs", "max_steps"):
        v = trainer.get(key)
        if v is not None and (_number(f"trainer.{key}", v, int) == 0 or int(v) < -1):
            raise ConfigError(
                f"trainer.{key}={v} trains nothing: the test would measure untrained weights; "
                f"set trainer.{key} >= 1 (-1: no limit)"
            )
    max_time = trainer.get("max_time")
    if max_time is not None and _seconds(max_time) <= 0:
        raise ConfigError(
            f"trainer.max_time={max_time} trains nothing: the test would measure untrained weights; "
            "set it to DD:HH:MM:SS above zero, or null for no limit"
        )
    for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches"):
        v = trainer.get(key)
        if v is None:
            continue
        if _number(f"trainer.{key}", v) < 0:
            raise ConfigError(f"trainer.{key}={v} must be >= 0 (a fraction <= 1.0 or a number of batches)")
        if float(v) == 0 and key == "limit_train_batches":
            raise ConfigError(
                "trainer.limit_train_batches=0 trains nothing: the test would measure untrained weights; set it > 0"
            )
    no_val = no_validation(cfg)
    if no_val:
        log.warning(
            "%s: no validation, so no val/acc_best; the last epoch is checkpointed and the test (if any) measures it",
            " and ".join(no_val),
        )
    monitor = (cfg.get("checkpoint") or {}).get("monitor")
    if monitor is not None and monitor not in VAL_EPOCH_METRICS:
        raise ConfigError(
            f"checkpoint.monitor={monitor} is not logged at the end of validation epochs; "
            f"use one of {', '.join(VAL_EPOCH_METRICS)}"
        )


def _seconds(max_time: Any) -> float:
    """``trainer.max_time`` (``DD:HH:MM:SS`` or ``{days: .., hours: ..}``, as Lightning takes it) in seconds."""
    try:
        if isinstance(max_time, dict):
            return float(timedelta(**{k: float(v) for k, v in max_time.items()}).total_seconds())
        days, hours, minutes, seconds = (float(part) for part in str(max_time).split(":"))
        return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds).total_seconds()
    except (TypeError, ValueError):
        raise ConfigError(
            f"trainer.max_time={max_time} is not a duration; write DD:HH:MM:SS (00:12:00:00 is 12 hours) or null"
        ) from None


def no_validation(cfg: dict) -> list[str]:
    """The settings that leave a run without validation (``[]`` when it validates)."""
    trainer = cfg.get("trainer") or {}
    reasons = (
        [f"trainer.limit_val_batches={trainer['limit_val_batches']}"]
        if trainer.get("limit_val_batches") is not None and float(trainer["limit_val_batches"]) == 0
        else []
    )
    data = cfg.get("data") or {}
    for key in ("val_tracks_per_class", "num_val"):
        if data.get(key) is not None and _number(f"data.{key}", data[key], int) == 0:
            reasons.append(f"data.{key}=0")
    return reasons


def _locate(path: str):
    from hydra.utils import get_class, get_method

    try:
        return get_class(path)
    except Exception:  # noqa: BLE001 - a function target (optim given as a factory)
        try:
            return get_method(path)
        except Exception as e:  # noqa: BLE001
            raise ImportError(first_line(e, empty=path)) from None


def build(node: dict | None, section: str, fix: str | None = None, **kwargs):
    """``instantiate(node)`` (None for an empty node), with a user error inside (a StnlabError, or a bad value or
    argument: bad shapes, positions, trainer flags) raised as one line naming ``section`` rather than Hydra's
    wrapped traceback; ``fix`` says what to change (default: the ``section.*`` override)."""
    if not node:
        return None
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, StnlabError):
            raise cause from None
        # RuntimeError: torch refusing a shape or an allocation; ImportError: a missing backend (accelerator=tpu).
        if cause is not None and isinstance(
            cause, (ValueError, TypeError, RuntimeError, ImportError, MisconfigurationException)
        ):
            first = first_line(cause, empty=type(cause).__name__)
            raise ConfigError(f"{section}: {first}; {fix or f'fix the {section}.* override'}") from None
        raise
