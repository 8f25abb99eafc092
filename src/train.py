"""Train one network: ``python src/train.py model=two_st [overrides]``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # runs from a checkout without `pip install -e .`

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from stnlab.cli import hydra_entry, run_cli  # noqa: E402


@hydra.main(config_path="../conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from stnlab.training.run import train

    metrics = run_cli(train, cfg)
    return metrics.get("val/acc_best") if metrics else None


if __name__ == "__main__":
    hydra_entry(main)
