"""Evaluate a checkpoint: ``python src/evaluate.py ckpt=PATH [split=test|val] [data.key=value ...]``.

Writes ``<split>_report.json`` (top-1 accuracy with a bootstrap interval over whole tracks,
per-class accuracy, macro F1, confusion matrix, most-confused pairs, errors),
``<split>_confusion.png`` and ``<split>_errors.png`` to
``out`` (default: the checkpoint's run folder, ``<ckpt>/../../eval/``). ``baseline=PATH``
scores a second checkpoint on the same images and adds the paired difference in accuracy.
"""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # runs from a checkout without `pip install -e .`

from stnlab.cli import run_cli  # noqa: E402
from stnlab.evaluation.args import Option, boolean, non_negative_int, parse, positive_int, wandb_mode  # noqa: E402
from stnlab.errors import ConfigError  # noqa: E402

OPTIONS = {
    "ckpt": Option(None, "checkpoint to evaluate (<run_dir>/checkpoints/best-*.ckpt)"),
    "split": Option("test", "test or val (or train)"),
    "baseline": Option(None, "a second checkpoint (e.g. the no_st run) scored on the same images: "
                             "the paired difference, with its interval over tracks"),
    "out": Option(None, "output folder (default <run_dir>/eval)"),
    "wandb": Option("false", "log to a W&B evaluation run: true (offline unless WANDB_MODE), online, false", wandb_mode),
    "max_errors": Option(32, "errors kept for the gallery and the W&B table", non_negative_int),
    "top_pairs": Option(10, "most-confused pairs printed", non_negative_int),
    "batch_size": Option(500, "evaluation batch size", positive_int),
    "device": Option("auto", "auto, cpu or cuda"),
    "verbose": Option(False, "log progress", boolean),
}


def main(argv: list[str]) -> None:
    values, data, _ = parse(argv, OPTIONS, "evaluate.py", __doc__.strip())
    if not values["ckpt"]:
        raise ConfigError("no checkpoint given; pass ckpt=<run_dir>/checkpoints/best-*.ckpt")
    logging.basicConfig(level=logging.INFO if values["verbose"] else logging.WARNING, format="%(message)s")
    from stnlab.checkpoints import data_overrides
    from stnlab.evaluation.checkpoint_report import evaluate_checkpoint

    report, paths = evaluate_checkpoint(values["ckpt"], values["split"], data_overrides(data), values["out"], values["wandb"],
                                        values["max_errors"], values["batch_size"], values["device"],
                                        values["baseline"])
    split = values["split"]
    ci = report.interval
    spread = (f" ({100 * ci.level:.0f}% interval {100 * ci.low:.2f}-{100 * ci.high:.2f}% over {ci.groups} "
              "resampled tracks)") if ci else ""
    print(f"{split}: {report.num_images} images, accuracy {100 * report.accuracy:.2f}%{spread}, "
          f"macro F1 {100 * report.f1_macro:.2f}%, {report.num_images - int(report.confusion.diagonal().sum())} errors")
    if report.comparison:
        c, d = report.comparison, report.comparison["difference"]
        print(f"  minus baseline {c['run']} ({100 * c['accuracy']:.2f}%): {100 * d['estimate']:+.2f} points "
              f"({100 * d['level']:.0f}% interval {100 * d['low']:+.2f} to {100 * d['high']:+.2f}, paired over "
              f"{d['groups']} resampled tracks)")
    for pair in report.most_confused(values["top_pairs"]):
        print(f"  {pair['count']:5d} x  {pair['true']} ({pair['true_id']}) -> {pair['pred']} ({pair['pred_id']})")
    print("wrote " + ", ".join(str(p) for p in paths.values()))


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
