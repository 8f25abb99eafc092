"""Train one network: ``python src/train.py model=two_st [overrides]``."""

import hydra
from omegaconf import DictConfig

from stnlab.cli import hydra_entry, run_cli
from stnlab.config import CONF_DIR
from stnlab.training.run import train


@hydra.main(config_path=str(CONF_DIR), config_name="train", version_base="1.3")
def _app(cfg: DictConfig) -> float | None:
    metrics = run_cli(train, cfg)
    return metrics.get("val/acc_best") if metrics else None


def main() -> None:
    """``python src/train.py``: the command line (``conf/train.yaml``), its errors as one line."""
    hydra_entry(_app)
