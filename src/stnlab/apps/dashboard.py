"""optuna-dashboard on the sweeps' storage: ``python src/dashboard.py [study=NAME] [storage=URL] [port=8080]``.

``make dashboard STUDY=NAME`` runs it. The keys are those of ``conf/dashboard.yaml`` (``--help``).
"""

import hydra
from omegaconf import DictConfig

from stnlab.cli import hydra_entry, run_cli
from stnlab.config import CONF_DIR, checks
from stnlab.sweeps.dashboard import serve


def dashboard(cfg: DictConfig) -> None:
    study = None if cfg.study is None else str(cfg.study)
    serve(study, cfg.storage, str(cfg.host), checks.positive_int("port", cfg.port), cfg.paths.sweeps_dir)


@hydra.main(config_path=str(CONF_DIR), config_name="dashboard", version_base="1.3")
def _app(cfg: DictConfig) -> None:
    run_cli(dashboard, cfg)


def main() -> None:
    """``python src/dashboard.py``: the command line (``conf/dashboard.yaml``), its errors as one line."""
    hydra_entry(_app)
