"""Geometric robustness: ``python src/robustness.py 'ckpt=[PATH,PATH]' [split=val] [key=value ...]``.

Accuracy of each checkpoint under the distortions of :mod:`stnlab.evaluation.robustness`, written and printed
as a table. The keys, and what is written where, are those of ``conf/robustness.yaml`` (``--help``).
"""

from omegaconf import DictConfig, OmegaConf

from stnlab.cli import log_progress
from stnlab.config import checks
from stnlab.evaluation.robustness import DISTORTIONS
from stnlab.evaluation.robustness_report import format_table, run_robustness


def options(cfg: DictConfig) -> dict:
    """The command line's values, checked before any work (the first bad one is a ConfigError)."""
    values = OmegaConf.to_container(cfg, resolve=True)
    checks.given_once("ckpt")
    levels = {
        key: (checks.positive_floats if key == "scale" else checks.finite_floats)(key, values[key])
        for key in DISTORTIONS
        if values[key] is not None
    }
    return dict(
        checks.evaluation_keys(values),
        ckpt=checks.words("ckpt", values["ckpt"]),
        levels=levels,
        distortions=checks.words("distortions", values["distortions"]),
        limit=checks.optional(checks.positive_int, "limit", values["limit"]),
    )


def robustness(cfg: DictConfig) -> None:
    values = options(cfg)
    log_progress(values["verbose"])

    table, paths = run_robustness(
        values["ckpt"],
        values["split"],
        values["data"],
        values["distortions"],
        values["levels"],
        values["limit"],
        values["out"],
        values["wandb"],
        values["batch_size"],
        values["device"],
        values["paths"]["outputs_dir"],
    )
    print(f"accuracy (%) on {table['num_images']} {table['split']} images\n")
    print(format_table(table))
    print("\nwrote " + ", ".join(str(p) for p in paths.values()))
