"""The run config's shape and its checks: each value of ``conf/train.yaml`` composed is checked here before any
work starts, in one clear line (the data modules, also built from Python, call :func:`check_data` too).

Plain functions over the composed config, not Hydra structured configs (dataclasses as schemas): the YAML
comments are the ``--help`` text, which a second copy of every key would drift from, and the ``_target_``
nodes take their targets' arguments, which :func:`check_arguments` reads from the targets themselves."""

from __future__ import annotations

import inspect
import logging
import math
import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import torch
from hydra.utils import get_object
from lightning.pytorch.accelerators import AcceleratorRegistry

from stnlab.config.checks import number, switch, text
from stnlab.errors import ConfigError, first_line

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


def validate(cfg: dict) -> None:
    """Reject invalid values before any work starts (one clear line each)."""
    lr = cfg["optim"].get("lr")
    if lr is None or number("optim.lr", lr) <= 0:
        raise ConfigError(f"optim.lr={lr} must be positive (the reference uses 0.01)")
    check_ranges(cfg, RANGES)
    check_data(cfg["data"])
    workers = cfg["data"].get("num_workers")
    most = 4 * (os.cpu_count() or 1)  # each worker is a copy of this process (hundreds of MB): a swarm exhausts memory
    if workers is not None and int(workers) > most:
        raise ConfigError(
            f"data.num_workers={workers}: this machine has {os.cpu_count()} CPU cores, and each worker is a copy of "
            f"the training process; use at most {most} (0 loads in the main process)"
        )
    check_sizes(cfg["model"], "model")
    for section in ("optim", "scheduler"):
        check_arguments(cfg.get(section), section)
    check_budget(cfg)
    check_trainer(cfg.get("trainer") or {})
    speed_settings(cfg.get("speed"))
    trainer = cfg.get("trainer") or {}
    accelerator = str(trainer.get("accelerator", "auto"))
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if on_gpu and trainer.get("deterministic") is True and (cfg["model"].get("transformers") or cfg.get("augment")):
        raise ConfigError(
            "trainer.deterministic=true cannot run on a GPU: grid_sample (STs, jitter) has no "
            "deterministic CUDA backward; use trainer.deterministic=warn, or train on the CPU"
        )


# Numbers of the run config with a range: (key, int or float, least, most, what a value out of it is told).
# A key that is absent or null passes.
RANGES = (
    ("data.batch_size", int, 1, math.inf, "must be a positive integer (the reference uses 50)"),
    ("data.eval_batch_size", int, 1, math.inf, "must be a positive integer (the reference uses 50)"),
    ("data.download_retries", float, 1, math.inf, "must be positive (the default is 3)"),
    ("data.download_timeout", float, 1e-9, math.inf, "must be positive (the default is 30)"),
    ("data.num_workers", int, 0, math.inf, "must be >= 0 (0: load in the main process)"),
    ("checkpoint.every_n_train_steps", int, 0, math.inf, "must be >= 0 (0 or null: only at epoch ends)"),
    ("module.locnet_lr_scale", float, 0, math.inf, "must be >= 0"),
    ("module.label_smoothing", float, 0, 1, "must be in 0..1 (0: none, the reference)"),
    ("seed", int, 0, 2**32 - 1, f"must be in 0..{2**32 - 1}"),
)
# The data node's, checked for the data modules too (:func:`check_data`).
DATA_RANGES = (
    ("data.image_size", int, 8, math.inf, "is too small; use at least 8 (the reference uses 48)"),
    ("data.val_tracks_per_class", int, 0, math.inf, "must be >= 0"),
    ("data.balance", float, 0, 1, "must be between 0 (plain shuffling) and 1 (every class equally often)"),
    ("data.clutter", float, 0, 1, "must lie in [0, 1]"),
)


def check_ranges(cfg: Mapping, ranges: tuple) -> None:
    """Each ``(key, kind, least, most, message)`` of ``ranges`` that ``cfg`` has: a ``kind`` in ``least..most``."""
    for key, kind, least, most, message in ranges:
        *parents, name = key.split(".")
        node = cfg
        for parent in parents:
            node = node.get(parent) or {}
        value = node.get(name)
        if value is not None and not least <= number(key, value, kind) <= most:
            raise ConfigError(f"{key}={value} {message}")


def check_data(data: Mapping) -> None:
    """The values of a ``data`` node, or a data module's arguments (they are also built from Python): each key
    that is there. The data modules check ``num_classes`` themselves (:func:`check_classes`): its range is theirs."""
    check_ranges({"data": data}, DATA_RANGES)
    if "num_train" in data:  # the synthetic data's sizes, shapes and clutter
        train, val, test = (number(f"data.{k}", data[k], int) for k in ("num_train", "num_val", "num_test"))
        if min(train, val) < 1 or test < 0:
            raise ConfigError(f"data.num_train={train}, num_val={val} must be >= 1 and num_test={test} >= 0")
        scale = list(data["scale"])
        if len(scale) != 2 or not 0 < number("data.scale", scale[0]) <= number("data.scale", scale[1]):
            raise ConfigError(f"data.scale={scale} must be [min, max] with 0 < min <= max")


def check_classes(num_classes: int, class_names: list | None = None, least: int = 2, most: int | None = None) -> None:
    """``data.num_classes`` in ``least..most`` and, when given, one class name for each."""
    if not least <= int(num_classes) <= (most or int(num_classes)):
        within = f"lie in {least}..{most}" if most else f"be at least {least}"
        raise ConfigError(f"data.num_classes={num_classes} must {within}")
    if class_names is not None and len(class_names) != int(num_classes):
        raise ConfigError(
            f"data.class_names has {len(class_names)} names for data.num_classes={num_classes}; give one name per class"
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
            if not values or any(number(path, v, int) < 1 for v in values):
                raise ConfigError(f"{path}={text(value)} must be positive integers (channels, units, kernel sizes)")
        elif key == "dropout" and value is not None and not 0 <= number(path, value) < 1:
            raise ConfigError(f"{path}={value} must be in 0..1 (0: no dropout)")


def check_trainer(trainer: dict) -> None:
    """Trainer values Lightning would take and then fail on mid-run (a division by zero, a hang)."""
    for key in ("accumulate_grad_batches", "check_val_every_n_epoch"):
        v = trainer.get(key)
        if v is not None and number(f"trainer.{key}", v, int) < 1:
            raise ConfigError(f"trainer.{key}={v} must be an integer >= 1")
    interval = trainer.get("val_check_interval")
    if interval is not None and number("trainer.val_check_interval", interval) <= 0:
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
        params = inspect.signature(get_object(str(node["_target_"]))).parameters  # a class, or a function
    except (ImportError, ValueError, TypeError) as e:
        raise ConfigError(
            f"{section}._target_={node['_target_']} cannot be used ({first_line(e)}); fix the {section} choice"
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
        if v is not None and (number(f"trainer.{key}", v, int) == 0 or int(v) < -1):
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
        if number(f"trainer.{key}", v) < 0:
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
        if data.get(key) is not None and number(f"data.{key}", data[key], int) == 0:
            reasons.append(f"data.{key}=0")
    return reasons


# The speed: section (stnlab.training.speed applies it) and its defaults.
DEFAULTS: dict[str, Any] = {
    "device_resident": "auto",
    "channels_last": "auto",
    "compile": False,
    "compile_mode": None,
    "matmul_precision": "high",
    "threads": None,
}


def speed_settings(speed: Mapping | None) -> dict[str, Any]:
    """The ``speed:`` section with defaults filled in, checked (one ConfigError line per bad key)."""
    out = dict(DEFAULTS)
    for key, value in (speed or {}).items():
        if key not in DEFAULTS:
            raise ConfigError(f"speed.{key} is not a speed switch; use one of {', '.join(DEFAULTS)}")
        out[key] = value
    for key in ("device_resident", "channels_last"):
        switch(f"speed.{key}", out[key])
    if out["matmul_precision"] not in (None, "highest", "high", "medium"):
        raise ConfigError(f"speed.matmul_precision={out['matmul_precision']} must be highest, high or medium")
    threads = out["threads"]
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"speed.threads={threads} must be a positive integer or null (one thread per core)")
    return out
