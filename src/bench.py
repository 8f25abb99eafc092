"""Benchmark every model preset: ``python src/bench.py [device=cuda] ['image_size=[32,48]'] [quick=true]``.

Needs torch, lightning, torchmetrics and Hydra (``make wheels`` brings hydra-core to a GPU machine
without it: ``make bench-gpu``). The keys are those of ``conf/bench.yaml`` (``--help``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # runs from a checkout without `pip install -e .`

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from stnlab.cli import hydra_entry, run_cli  # noqa: E402


@hydra.main(config_path="../conf", config_name="bench", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from stnlab.bench import run

    run_cli(run, cfg)


if __name__ == "__main__":
    hydra_entry(main)
