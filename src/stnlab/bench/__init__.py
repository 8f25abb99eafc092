"""``python src/bench.py``: training/inference throughput of every model preset, Lightning against plain PyTorch.

Needs torch, lightning, torchmetrics and PyYAML only (hydra-core and wandb are optional), so
that it runs on GPU machines as they come. See ``--help`` and the README's "Speed" section.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import logging
import platform
import warnings
from pathlib import Path

import torch

from stnlab.errors import ConfigError, StnlabError

QUICK = dict(image_size=[32], batch_size=4, warmup=1, steps=1, reps=2, eval_batch_size=8, epoch_images=16)
# Epoch-run variants: (what changes, function (speed, precision) -> (speed, precision, progress bar)).
VARIANTS = {
    "base": ("as configured", lambda s, p: (s, p, False)),
    "compile": ("speed.compile=true", lambda s, p: (dict(s, compile=True), p, False)),
    "compile_cudagraphs": ("speed.compile=true, compile_mode=reduce-overhead (CUDA graphs)",
                           lambda s, p: (dict(s, compile=True, compile_mode="reduce-overhead"), p, False)),
    "progress_bar": ("with the progress bar (a GPU sync per step)", lambda s, p: (s, p, True)),
    "nchw": ("speed.channels_last=false", lambda s, p: (dict(s, channels_last=False), p, False)),
    "host_data": ("speed.device_resident=false", lambda s, p: (dict(s, device_resident=False), p, False)),
    "fp32": ("precision 32-true (TF32 matmuls)", lambda s, p: (s, "32-true", False)),
}
DEFAULTS = {  # per device: warmup steps, timed steps, repetitions of each loop
    "cpu": dict(warmup=1, steps=4, reps=3),
    "cuda": dict(warmup=10, steps=40, reps=3),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.py", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (cuda when available)")
    p.add_argument("--models", nargs="*", help="model presets (conf/model/); default: all; none: no model table")
    p.add_argument("--image-size", type=int, nargs="+", help="image sides to bench (default: 48)")
    p.add_argument("--batch-size", type=int, help="training batch (default: 50, the reference)")
    p.add_argument("--eval-batch-size", type=int, default=None, help="inference batch (default: 500)")
    p.add_argument("--warmup", type=int, help="untimed steps before each timed window")
    p.add_argument("--steps", type=int, help="timed steps per repetition")
    p.add_argument("--reps", type=int, help="repetitions of each loop, alternating")
    p.add_argument("--precision", help="Lightning precision (default: bf16-mixed on GPUs, 32-true on CPUs)")
    p.add_argument("--no-cudnn-benchmark", action="store_true", help="leave cuDNN autotuning off on GPUs")
    p.add_argument("--speed", nargs="*", default=[], metavar="KEY=VALUE",
                   help="speed switches as in conf/train.yaml: channels_last=false compile=true ...")
    p.add_argument("--epoch", action="store_true", help="also time whole GTSRB-sized training epochs (39,209 images)")
    p.add_argument("--epoch-model", default="two_st")
    p.add_argument("--epoch-sizes", type=int, nargs="+", help="image sides of the epoch runs (default: --image-size)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per --epoch run (the first includes warm-up)")
    p.add_argument("--epoch-variants", nargs="+", default=["base"], choices=sorted(VARIANTS),
                   help="epoch runs with one switch changed: " + "; ".join(f"{k}: {v[0]}" for k, v in VARIANTS.items()))
    p.add_argument("--data", default="random", choices=["random", "gtsrb"],
                   help="random uint8 images of the GTSRB shape (default) or the real GTSRB cache")
    p.add_argument("--data-root", default="data", help="--data gtsrb: archives and cache folder")
    p.add_argument("--mirror", default=None, help="--data gtsrb: folder or URL of the archives")
    p.add_argument("--quick", action="store_true", help="tiny settings: runs in seconds (for the tests)")
    p.add_argument("--out", default="outputs/bench", help="folder of the report (<date>.md)")
    return p.parse_args(argv)


def _speed(pairs: list[str]) -> dict:
    import yaml

    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--speed {pair}: use KEY=VALUE, e.g. --speed channels_last=false")
        k, v = pair.split("=", 1)
        out[k] = yaml.safe_load(v)
    return out


def _device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is visible here; use --device cpu")
    return torch.device(name)


def _data(args, image_size: int, batch_size: int, eval_batch_size: int, num_train: int):
    if args.data == "gtsrb":
        from stnlab.data.datamodule import GTSRBDataModule

        return GTSRBDataModule(root=args.data_root, mirror=args.mirror, image_size=image_size,
                               batch_size=batch_size, eval_batch_size=eval_batch_size)
    from stnlab.bench.measure import RandomData

    return RandomData(num_train, image_size, batch_size, eval_batch_size, num_val=eval_batch_size)


def _quiet() -> None:
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*(does not have many workers|smaller than the logging interval"
                                              "|LeafSpec|litlogger|TensorCores|tensor cores|no `val_dataloader`).*")


def main(argv: list[str] | None = None) -> Path:
    import lightning

    from stnlab.bench.config import model_presets, run_config
    from stnlab.bench.measure import GTSRB_TRAIN, Setup, bench_model, full_epochs
    from stnlab.bench.report import render
    from stnlab.training.speed import speed_settings

    args = parse_args(argv)
    _quiet()
    device = _device(args.device)
    q = QUICK if args.quick else {}
    loop = {k: next(v for v in (getattr(args, k), q.get(k), DEFAULTS[device.type][k]) if v is not None)
            for k in ("warmup", "steps", "reps")}
    sizes = args.image_size or q.get("image_size") or [48]
    batch = args.batch_size or q.get("batch_size") or 50
    eval_batch = args.eval_batch_size or q.get("eval_batch_size") or 500
    models = model_presets() if args.models is None else args.models
    unknown = sorted(set(models + [args.epoch_model]) - set(model_presets()))
    if unknown:
        raise ConfigError(f"unknown model preset(s) {', '.join(unknown)}; choose from {', '.join(model_presets())}")
    speed = speed_settings(_speed(args.speed))
    precision = args.precision or ("bf16-mixed" if device.type == "cuda" else "32-true")
    setup = Setup(device, precision, device.type == "cuda" and not args.no_cudnn_benchmark, speed)

    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or 'CPU'}"
    header = [
        f"# stnlab benchmark, {datetime.datetime.now():%Y-%m-%d %H:%M}",
        "",
        f"- device: {device.type} ({dev_name}), torch {torch.__version__}, lightning {lightning.__version__}, "
        f"{torch.get_num_threads()} CPU threads",
        f"- data: {'random uint8 images of the GTSRB shape (throughput only)' if args.data == 'random' else 'the real GTSRB cache'}"
        f"; training batch {batch}, inference batch {eval_batch}",
        f"- precision {precision}, cuDNN benchmark {setup.benchmark}, speed switches {speed}",
        f"- each loop: {loop['warmup']} warm-up + {loop['steps']} timed steps, {loop['reps']} repetitions alternating "
        "Lightning / plain; medians (the ratio: median of back-to-back pairs)",
        "- Lightning: Trainer.fit of STNModule (CSV logging every 20 steps, no progress bar); plain: the same "
        "network, preprocessing, optimiser and batches in a hand-written loop",
        "- data wait: share of the loop's wall time inside the loader's next() and the copy to the device; "
        "peak memory: " + ("torch.cuda.max_memory_allocated" if device.type == "cuda" else "the process's peak RSS"),
    ]
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{datetime.date.today():%Y-%m-%d}.md"
    if path.exists():
        path = out_dir / f"{datetime.datetime.now():%Y-%m-%d_%H-%M-%S}.md"
    results, epochs, errors = [], [], []

    def attempt(what: str, fn, into: list) -> None:
        """One measurement; a failure is reported in the table's notes and the others still run."""
        print(f"bench: {what} ...", flush=True)
        try:
            into.append(fn())
        except Exception as e:  # noqa: BLE001 - one failing preset must not lose the whole (costly) GPU run
            errors.append(f"- {what}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            print(f"bench: {what} FAILED: {type(e).__name__}: {e}", flush=True)
        path.write_text(render(header, results, epochs, errors))  # after every row: a cut-off run keeps its rows

    for size in sizes:
        data = _data(args, size, batch, eval_batch, (loop["warmup"] + loop["steps"]) * batch)
        for name in models:
            cfg = run_config([f"model={name}", f"data.image_size={size}", f"data.batch_size={batch}"])
            attempt(f"{name} at {size}px", functools.partial(
                bench_model, name, cfg, data, setup, loop["warmup"], loop["steps"], loop["reps"]), results)
    for size in (args.epoch_sizes or sizes) if args.epoch else []:
        data = _data(args, size, batch, eval_batch, q.get("epoch_images") or GTSRB_TRAIN)
        cfg = run_config([f"model={args.epoch_model}", f"data.image_size={size}", f"data.batch_size={batch}"])
        for name in args.epoch_variants:
            label, change = VARIANTS[name]
            v_speed, v_precision, bar = change(speed, precision)
            v_setup = Setup(device, v_precision, setup.benchmark, v_speed)
            attempt(f"{args.epoch_model} epochs at {size}px, {label}", functools.partial(
                full_epochs, args.epoch_model, cfg, data, v_setup, args.epochs, label, bar), epochs)
    text = render(header, results, epochs, errors)
    path.write_text(text)
    print(text)
    print(f"bench: report written to {path}")
    if errors:
        raise BenchError(f"{len(errors)} measurement(s) failed (listed in {path})")
    return path


class BenchError(StnlabError):
    pass
