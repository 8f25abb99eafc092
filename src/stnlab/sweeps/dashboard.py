"""``python -m stnlab.sweeps.dashboard [STUDY] [--storage URL] [--port 8080]``: optuna-dashboard on the sweep storage.

``make dashboard`` (``STUDY=name`` to print that study's page). The default storage is the
one ``src/sweep.py`` uses: ``sqlite:///outputs/sweeps/optuna.db``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stnlab.errors import ConfigError
from stnlab.sweeps.spec import default_storage


def study_url(storage, study: str | None, host: str, port: int) -> str:
    import optuna

    base = f"http://{host}:{port}/dashboard"
    if not study:
        return base
    names = optuna.get_all_study_names(storage)
    if study not in names:
        raise ConfigError(f"no study '{study}' in {storage.url} (has: {', '.join(names) or 'none'}); check STUDY=")
    return f"{base}/studies/{storage.get_study_id_from_name(study)}"


def main(argv: list[str] | None = None) -> None:
    from optuna_dashboard import run_server

    from stnlab.sweeps.storage import make_storage

    parser = argparse.ArgumentParser(prog="python -m stnlab.sweeps.dashboard",
                                     description="optuna-dashboard on the sweep storage (make dashboard)")
    parser.add_argument("study", nargs="?", default=None, help="study to open (its page URL is printed)")
    parser.add_argument("--storage", default=None, help="Optuna storage URL (default: the sweeps' SQLite file)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    url = args.storage or default_storage()
    path = Path(url.removeprefix("sqlite:///"))
    if url.startswith("sqlite:///") and not path.is_file():
        raise ConfigError(f"no sweep storage at {path}; run `make sweep` first or pass --storage URL")
    storage = make_storage(url)
    print(f"optuna-dashboard on {study_url(storage, args.study, args.host, args.port)} (Ctrl-C to stop)", flush=True)
    run_server(storage, host=args.host, port=args.port)


if __name__ == "__main__":
    from stnlab.cli import run_cli

    run_cli(main)
