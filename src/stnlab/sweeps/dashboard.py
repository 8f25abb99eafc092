"""optuna-dashboard on the sweep storage: ``python src/dashboard.py [study=NAME] [storage=URL] [port=8080]``.

``make dashboard`` (``STUDY=name`` to print that study's page). The default storage is the
one ``src/sweep.py`` uses: ``sqlite:///<paths.sweeps_dir>/optuna.db`` (``outputs/sweeps``).
"""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna_dashboard import run_server

from stnlab.errors import ConfigError
from stnlab.sweeps.spec import default_storage
from stnlab.sweeps.storage import make_storage


def study_url(storage, study: str | None, host: str, port: int) -> str:
    base = f"http://{host}:{port}/dashboard"
    if not study:
        return base
    names = optuna.get_all_study_names(storage)
    if study not in names:
        raise ConfigError(f"no study '{study}' in {storage.url} (has: {', '.join(names) or 'none'}); check STUDY=")
    return f"{base}/studies/{storage.get_study_id_from_name(study)}"


def serve(
    study: str | None = None,
    storage: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    sweeps_dir: str | Path | None = None,
) -> None:
    """Serve optuna-dashboard on ``storage`` (default: the SQLite file in ``sweeps_dir``, the sweeps') until Ctrl-C."""
    url = storage or default_storage(sweeps_dir)
    path = Path(url.removeprefix("sqlite:///"))
    if url.startswith("sqlite:///") and not path.is_file():
        raise ConfigError(f"no sweep storage at {path}; run `make sweep` first or pass storage=URL")
    opened = make_storage(url)
    print(f"optuna-dashboard on {study_url(opened, study, host, port)} (Ctrl-C to stop)", flush=True)
    run_server(opened, host=host, port=port)
