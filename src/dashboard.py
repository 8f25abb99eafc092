"""optuna-dashboard on the sweeps' storage: ``python src/dashboard.py [study=NAME] [storage=URL] [port=8080]``.

``make dashboard STUDY=NAME`` runs it. The keys are those of ``conf/dashboard.yaml`` (``--help``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # runs from a checkout without `pip install -e .`

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from stnlab.cli import hydra_entry, run_cli  # noqa: E402


def dashboard(cfg: DictConfig) -> None:
    from stnlab.cli import checks
    from stnlab.sweeps.dashboard import serve

    study = None if cfg.study is None else str(cfg.study)
    serve(study, cfg.storage, str(cfg.host), checks.positive_int("port", cfg.port))


@hydra.main(config_path="../conf", config_name="dashboard", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_cli(dashboard, cfg)


if __name__ == "__main__":
    hydra_entry(main)
