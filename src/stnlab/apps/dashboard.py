"""optuna-dashboard on the sweeps' storage: ``python src/dashboard.py [study=NAME] [storage=URL] [port=8080]``.

``make dashboard STUDY=NAME`` runs it. The keys are those of ``conf/dashboard.yaml`` (``--help``).
"""

from omegaconf import DictConfig

from stnlab.config import checks
from stnlab.sweeps.dashboard import serve


def dashboard(cfg: DictConfig) -> None:
    study = None if cfg.study is None else str(cfg.study)
    serve(study, cfg.storage, str(cfg.host), checks.positive_int("port", cfg.port), cfg.paths.sweeps_dir)
