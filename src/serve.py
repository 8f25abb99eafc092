"""Serve a checkpoint over HTTP: ``python src/serve.py ckpt=PATH [port=8000]``.

Then: ``curl -F file=@sign.ppm http://127.0.0.1:8000/predict``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # runs from a checkout without `pip install -e .`

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from stnlab.cli import hydra_entry, run_cli  # noqa: E402


@hydra.main(config_path="../conf", config_name="serve", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from stnlab.query.serve_app import serve

    run_cli(serve, cfg)


if __name__ == "__main__":
    hydra_entry(main)
