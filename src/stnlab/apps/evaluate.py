"""Evaluate a checkpoint: ``python src/evaluate.py ckpt=PATH [split=test|val] [baseline=PATH] [data.KEY=VALUE ...]``.

Writes its report (:mod:`stnlab.evaluation.checkpoint_report`), or with ``curve=true`` every epoch's accuracy,
and prints the figures. The keys, and what is written where, are those of ``conf/evaluate.yaml`` (``--help``).
"""

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from stnlab import IDSIA_COMMITTEE_ACC
from stnlab.cli import log_progress
from stnlab.config import checks
from stnlab.errors import ConfigError
from stnlab.evaluation.checkpoint_report import evaluate_checkpoint
from stnlab.evaluation.curve import score_epochs, write_curve
from stnlab.run_dirs import run_dir_of_checkpoint
from stnlab.training.checkpoints import pick_device


def options(cfg: DictConfig) -> dict:
    """The command line's values, checked before any work (the first bad one is a ConfigError)."""
    values = OmegaConf.to_container(cfg, resolve=True)
    if not values["ckpt"]:
        raise ConfigError("no checkpoint given; pass ckpt=<run_dir>/checkpoints/best-*.ckpt")
    return dict(
        checks.evaluation_keys(values),
        ckpt=str(values["ckpt"]),
        max_errors=checks.non_negative_int("max_errors", values["max_errors"]),
        top_pairs=checks.non_negative_int("top_pairs", values["top_pairs"]),
        curve=checks.boolean("curve", values["curve"]),
    )


def curve(values: dict) -> None:
    """``curve=true``: every epoch checkpoint of the run scored on the split, against the run's wall minutes."""
    ckpt = Path(values["ckpt"])
    run_dir = ckpt if (ckpt / "checkpoints").is_dir() else run_dir_of_checkpoint(ckpt)
    split = values["split"]
    points = score_epochs(run_dir, split, values["data"], values["batch_size"], pick_device(values["device"]))
    path = write_curve(points, Path(values["out"] or run_dir / "eval") / f"{split}_curve.csv", split)
    for p in points:
        at = "" if p.minutes is None else f" at {p.minutes:.1f} min"
        print(f"{split}: epoch {p.epoch}{at}: accuracy {100 * p.accuracy:.2f}%")
    passed = next((p for p in points if p.accuracy >= IDSIA_COMMITTEE_ACC / 100), None)
    if passed is None:
        print(f"{split} accuracy never reached the committee's {IDSIA_COMMITTEE_ACC}%")
    else:
        at = "" if passed.minutes is None else f", {passed.minutes:.1f} wall minutes"
        print(f"{split} accuracy first reached {IDSIA_COMMITTEE_ACC}% after epoch {passed.epoch}{at}")
    print(f"wrote {path}")


def resampled(groups: int, report) -> str:
    """What the bootstrap drew: whole tracks (training and validation images), or single images (the test set
    has no tracks, so each image is its own group)."""
    return f"{groups} resampled {'tracks' if groups < report.num_images else 'images'}"


def evaluate(cfg: DictConfig) -> None:
    values = options(cfg)
    log_progress(values["verbose"])
    if values["curve"]:
        return curve(values)

    report, paths = evaluate_checkpoint(
        values["ckpt"],
        values["split"],
        values["data"],
        values["out"],
        values["wandb"],
        values["max_errors"],
        values["batch_size"],
        values["device"],
        values["baseline"],
    )
    ci = report.interval
    spread = (
        f" ({100 * ci.level:.0f}% interval {100 * ci.low:.2f}-{100 * ci.high:.2f}% over {resampled(ci.groups, report)})"
        if ci
        else ""
    )
    print(
        f"{values['split']}: {report.num_images} images, accuracy {100 * report.accuracy:.2f}%{spread}, "
        f"macro F1 {100 * report.f1_macro:.2f}%, {report.num_errors} errors"
    )
    if report.comparison:
        c, d = report.comparison, report.comparison["difference"]
        print(
            f"  minus baseline {c['run']} ({100 * c['accuracy']:.2f}%): {100 * d['estimate']:+.2f} points "
            f"({100 * d['level']:.0f}% interval {100 * d['low']:+.2f} to {100 * d['high']:+.2f}, paired over "
            f"{resampled(d['groups'], report)})"
        )
    for pair in report.most_confused(values["top_pairs"]):
        print(f"  {pair['count']:5d} x  {pair['true']} ({pair['true_id']}) -> {pair['pred']} ({pair['pred_id']})")
    print("wrote " + ", ".join(str(p) for p in paths.values()))
