"""Show what every ST of a trained network does: ``python src/visualize.py ckpt=PATH [n=16] [data=synth]``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # runs from a checkout without `pip install -e .`

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from stnlab.cli import hydra_entry, run_cli  # noqa: E402


@hydra.main(config_path="../conf", config_name="visualize", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from stnlab.viz.visualize import visualize

    run_cli(visualize, cfg)


if __name__ == "__main__":
    hydra_entry(main)
