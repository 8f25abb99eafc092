"""Geometric robustness: ``python src/robustness.py ckpt=PATH [ckpt=PATH ...] [split=val] [key=value ...]``.

Accuracy of each checkpoint under rotations (0-30 degrees), scales (0.6-1.4), translations
(0-20% of the size) and perspective tilts (0-50 degrees) of the evaluation images; writes
``robustness_<split>.json`` and ``robustness_<split>.png`` to ``out`` and prints the table.
"""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # runs from a checkout without `pip install -e .`

from stnlab.cli import run_cli  # noqa: E402
from stnlab.evaluation.args import (Option, boolean, finite_floats, parse, positive_floats, positive_int,  # noqa: E402
                                    wandb_mode, words)

OPTIONS = {
    "ckpt": Option([], "checkpoint to evaluate; repeat for several models", repeat=True),
    "split": Option("val", "val or test (or train)"),
    "distortions": Option(("rotation", "scale", "translation", "perspective"), "which distortions, comma-separated", words),
    "rotation": Option(None, "rotation levels in degrees, e.g. 0,10,20,30", finite_floats),
    "scale": Option(None, "zoom factors, e.g. 0.6,0.8,1,1.2,1.4", positive_floats),
    "translation": Option(None, "shifts as fractions of the size, e.g. 0,0.1,0.2", finite_floats),
    "perspective": Option(None, "tilts in degrees, e.g. 0,20,40", finite_floats),
    "limit": Option(None, "evaluate a fixed random subset of this many images (>= 1)", positive_int),
    "out": Option(None, "output folder (default <run_dir>/eval for one checkpoint, else outputs/robustness/<time>)"),
    "wandb": Option("false", "log line plots to a W&B run: true (offline unless WANDB_MODE), online, false", wandb_mode),
    "batch_size": Option(500, "evaluation batch size", positive_int),
    "device": Option("auto", "auto, cpu or cuda"),
    "verbose": Option(False, "log progress", boolean),
}


def main(argv: list[str]) -> None:
    values, data, _ = parse(argv, OPTIONS, "robustness.py", __doc__.strip())
    logging.basicConfig(level=logging.INFO if values["verbose"] else logging.WARNING, format="%(message)s")
    from stnlab.checkpoints import data_overrides
    from stnlab.evaluation.robustness_report import format_table, run_robustness

    levels = {k: values[k] for k in ("rotation", "scale", "translation", "perspective") if values[k]}
    table, paths = run_robustness(values["ckpt"], values["split"], data_overrides(data), values["distortions"], levels,
                                  values["limit"], values["out"], values["wandb"], values["batch_size"],
                                  values["device"])
    print(f"accuracy (%) on {table['num_images']} {table['split']} images\n")
    print(format_table(table))
    print("\nwrote " + ", ".join(str(p) for p in paths.values()))


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
