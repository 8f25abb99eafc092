"""``python src/bench.py``: training/inference throughput of every model preset, Lightning against plain PyTorch.

Needs torch, lightning, torchmetrics and Hydra (wandb is optional); a GPU machine without hydra-core
takes its wheels from ``make wheels`` (``make bench-gpu``). The settings are the keys of
``conf/bench.yaml`` (``python src/bench.py --help``); see docs/speed.md.
"""

from __future__ import annotations

import datetime
import functools
import logging
import platform
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning
import torch
from omegaconf import OmegaConf

from stnlab.bench.inference import inference_table
from stnlab.bench.measure import GTSRB_TRAIN, RandomData, Setup, bench_model, full_epochs, preset_config
from stnlab.bench.report import render
from stnlab.config import checks, group_options
from stnlab.config.schema import speed_settings
from stnlab.data.datamodule import GTSRBDataModule
from stnlab.errors import ConfigError, StnlabError, described
from stnlab.noise import silence_known_noise
from stnlab.training.checkpoints import pick_device

QUICK = dict(image_size=[32], batch_size=4, warmup=1, steps=1, reps=2, eval_batch_size=8, epoch_images=16)
# Epoch-run variants: (what changes, the speed switches it sets, its precision (None: as configured), progress bar).
VARIANTS = {
    "base": ("as configured", {}, None, False),
    "compile": ("speed.compile=true", {"compile": True}, None, False),
    "compile_cudagraphs": (
        "speed.compile=true, compile_mode=reduce-overhead (CUDA graphs)",
        {"compile": True, "compile_mode": "reduce-overhead"},
        None,
        False,
    ),
    "progress_bar": ("with the progress bar (a GPU sync per step)", {}, None, True),
    "nchw": ("speed.channels_last=false", {"channels_last": False}, None, False),
    "host_data": ("speed.device_resident=false", {"device_resident": False}, None, False),
    "fp32": ("precision 32-true (TF32 matmuls)", {}, "32-true", False),
}
SOURCES = {"random": "random uint8 images of the GTSRB shape (throughput only)", "gtsrb": "the real GTSRB cache"}
DEFAULTS = {  # per device: warmup steps, timed steps, repetitions of each loop
    "cpu": dict(warmup=1, steps=4, reps=3),
    "cuda": dict(warmup=10, steps=40, reps=3),
}


def settings(values: Mapping[str, Any]) -> dict[str, Any]:
    """conf/bench.yaml's values, checked, with the defaults of the device and of ``quick=true`` filled in."""
    device = pick_device(str(values["device"]))
    q = QUICK if checks.boolean("quick", values["quick"]) else {}
    counts = {"warmup": checks.non_negative_int, "steps": checks.positive_int, "reps": checks.positive_int}
    loop = {
        k: check(k, next(v for v in (values[k], q.get(k), DEFAULTS[device.type][k]) if v is not None))
        for k, check in counts.items()
    }
    sizes = checks.positive_ints("image_size", values["image_size"] or q.get("image_size") or [48])
    presets = group_options("model")
    models = presets if values["models"] is None else checks.words("models", values["models"])
    _known(models + [str(values["epoch_model"])], presets)
    variants = [
        checks.one_of("epoch_variants", v, VARIANTS) for v in checks.words("epoch_variants", values["epoch_variants"])
    ]
    return {
        "device": device,
        "loop": loop,
        "sizes": sizes,
        "models": models,
        "batch": checks.positive_int("batch_size", values["batch_size"] or q.get("batch_size") or 50),
        "eval_batch": checks.positive_int(
            "eval_batch_size", values["eval_batch_size"] or q.get("eval_batch_size") or 500
        ),
        "precision": values["precision"] or ("bf16-mixed" if device.type == "cuda" else "32-true"),
        "benchmark": device.type == "cuda" and checks.boolean("cudnn_benchmark", values["cudnn_benchmark"]),
        "speed": speed_settings({k: v for k, v in (values["speed"] or {}).items() if v is not None}),
        "epoch": checks.boolean("epoch", values["epoch"]),
        "epoch_model": str(values["epoch_model"]),
        "epoch_sizes": checks.positive_ints("epoch_sizes", values["epoch_sizes"] or sizes),
        "epochs": checks.positive_int("epochs", values["epochs"]),
        "epoch_images": q.get("epoch_images"),
        "variants": variants,
        "source": checks.one_of("data.source", values["data"]["source"], SOURCES),
        "data": values["data"],
        "out": Path(values["out"]),
        "inference": _inference_settings(values["inference"], presets, bool(q)),
    }


def _known(models: list[str], presets: list[str], where: str = "") -> list[str]:
    unknown = sorted(set(models) - set(presets))
    if unknown:
        raise ConfigError(f"unknown model preset(s) {', '.join(unknown)}{where}; choose from {', '.join(presets)}")
    return models


def _inference_settings(values: Mapping[str, Any], presets: list[str], quick: bool) -> dict[str, Any]:
    models = _known(checks.words("inference.models", values["models"] or []), presets, " in inference.models")
    small = {"batch": 8, "reps": 1, "calls": 2} if quick else {}
    return {
        "models": models,
        "image_size": checks.positive_int("inference.image_size", values["image_size"]),
        **{
            k: checks.positive_int(f"inference.{k}", small.get(k, values[k]))
            for k in ("batch", "reps", "calls", "threads")
        },
    }


def _data(opts: dict, image_size: int, num_train: int):
    if opts["source"] == "gtsrb":
        return GTSRBDataModule(
            root=opts["data"]["root"],
            mirror=opts["data"]["mirror"],
            image_size=image_size,
            batch_size=opts["batch"],
            eval_batch_size=opts["eval_batch"],
        )

    return RandomData(num_train, image_size, opts["batch"], opts["eval_batch"], num_val=opts["eval_batch"])


def _quiet() -> None:
    silence_known_noise()
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings(
        "ignore",
        message=".*(does not have many workers|smaller than the logging interval"
        "|TensorCores|tensor cores|no `val_dataloader`).*",
    )


def run(cfg) -> Path:
    """The benchmark that conf/bench.yaml's values ``cfg`` describe; returns the report's path."""
    opts = settings(OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg)
    _quiet()
    device, loop, batch, eval_batch, speed, precision = (
        opts[k] for k in ("device", "loop", "batch", "eval_batch", "speed", "precision")
    )
    setup = Setup(device, precision, opts["benchmark"], speed)

    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or 'CPU'}"
    header = [
        f"# stnlab benchmark, {datetime.datetime.now():%Y-%m-%d %H:%M}",
        "",
        f"- device: {device.type} ({dev_name}), torch {torch.__version__}, lightning {lightning.__version__}, "
        f"{torch.get_num_threads()} CPU threads",
        f"- data: {SOURCES[opts['source']]}; training batch {batch}, inference batch {eval_batch}",
        f"- precision {precision}, cuDNN benchmark {setup.benchmark}, speed switches {speed}",
        f"- each loop: {loop['warmup']} warm-up + {loop['steps']} timed steps, {loop['reps']} repetitions alternating "
        "Lightning / plain; medians (the ratio: median of back-to-back pairs)",
        "- Lightning: Trainer.fit of STNModule (CSV logging every 20 steps, no progress bar); plain: the same "
        "network, preprocessing, optimiser and batches in a hand-written loop",
        "- data wait: share of the loop's wall time inside the loader's next() and the copy to the device; "
        "peak memory: " + ("torch.cuda.max_memory_allocated" if device.type == "cuda" else "the process's peak RSS"),
    ]
    out_dir = opts["out"]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{datetime.date.today():%Y-%m-%d}.md"
    if path.exists():
        path = out_dir / f"{datetime.datetime.now():%Y-%m-%d_%H-%M-%S}.md"
    results, epochs, tables, errors = [], [], [], []

    def attempt(what: str, fn, into: list) -> None:
        """One measurement; a failure is reported in the table's notes and the others still run."""
        print(f"bench: {what} ...", flush=True)
        try:
            into.append(fn())
        except Exception as e:  # noqa: BLE001 - one failing preset must not lose the whole (costly) GPU run
            errors.append(f"- {what}: {described(e)}")
            print(f"bench: {what} FAILED: {type(e).__name__}: {e}", flush=True)
        path.write_text(render(header, results, epochs, tables, errors))  # after every row: a cut-off run keeps them

    for size in opts["sizes"]:
        data = _data(opts, size, (loop["warmup"] + loop["steps"]) * batch)
        for name in opts["models"]:
            run_cfg = preset_config(name, size, f"data.batch_size={batch}")
            attempt(
                f"{name} at {size}px",
                functools.partial(bench_model, name, run_cfg, data, setup, loop["warmup"], loop["steps"], loop["reps"]),
                results,
            )
    model = opts["epoch_model"]
    for size in opts["epoch_sizes"] if opts["epoch"] else []:
        data = _data(opts, size, opts["epoch_images"] or GTSRB_TRAIN)
        run_cfg = preset_config(model, size, f"data.batch_size={batch}")
        for name in opts["variants"]:
            label, switches, v_precision, bar = VARIANTS[name]
            v_setup = Setup(device, v_precision or precision, setup.benchmark, {**speed, **switches})
            attempt(
                f"{model} epochs at {size}px, {label}",
                functools.partial(full_epochs, model, run_cfg, data, v_setup, opts["epochs"], label, bar),
                epochs,
            )
    if opts["inference"]["models"]:
        attempt("inference speed", functools.partial(inference_table, **opts["inference"]), tables)
    text = render(header, results, epochs, tables, errors)
    path.write_text(text)
    print(text)
    print(f"bench: report written to {path}")
    if errors:
        raise BenchError(f"{len(errors)} measurement(s) failed (listed in {path})")
    return path


class BenchError(StnlabError):
    pass
