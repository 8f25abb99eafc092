"""Where a study lives: an Optuna ``RDBStorage`` (SQLite by default, any SQLAlchemy URL for many workers).

Every worker beats a heartbeat while its trial runs; a trial whose worker died (no beat for
``grace_period`` seconds) is marked FAIL by the next worker and queued again by
``RetryHeartbeatStaleTrialCallback`` (the successor of ``RetryFailedTrialCallback``).
"""

from __future__ import annotations

import importlib.util
import random
import time
from pathlib import Path

import optuna
from hydra.utils import instantiate
from optuna.exceptions import DuplicatedStudyError
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from stnlab.errors import ConfigError, described, first_line
from stnlab.noise import optuna_experimental
from stnlab.sweeps.spec import SweepSpec


def with_driver(url: str) -> str:
    """SQLAlchemy 2.1 maps ``postgresql://`` to psycopg 3; the project ships psycopg2, so name it."""
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None:
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


# Seconds a worker waits for a storage server to answer (connect and log in) before giving up with one line.
CONNECT_TIMEOUT = 10.0
_RACE_ATTEMPTS = 8


def _engine_kwargs(url: str, connect_timeout: float) -> dict:
    if url.startswith("sqlite:///"):
        folder = Path(url.removeprefix("sqlite:///")).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # a file in the way, no permission
            raise ConfigError(
                f"cannot make the folder {folder} of the study storage {url} ({e.strerror or e}); "
                "pass storage=sqlite:///<a writable folder>/optuna.db"
            ) from None
        return {"connect_args": {"timeout": 60}}  # many local workers wait for the write lock
    seconds = max(1, int(round(connect_timeout)))  # libpq and MySQL take whole seconds
    if url.startswith(("postgresql", "mysql")):
        # connect_timeout bounds the whole start-up (TCP, SSL request, login): a server that accepts the
        # connection and never answers would otherwise hang the worker without a word.
        return {"connect_args": {"connect_timeout": seconds}, "pool_timeout": seconds}
    return {}


def _is_creation_race(e: Exception) -> bool:
    """Workers opening a new database together race to create Optuna's tables: the losers see the tables
    made under them ("table studies already exists", a duplicate key) or the database locked meanwhile."""
    if isinstance(e, (IntegrityError, ProgrammingError)):
        return True
    text = str(e).lower()
    return isinstance(e, OperationalError) and ("already exists" in text or "locked" in text or "busy" in text)


def make_storage(
    url: str, heartbeat: dict[str, int] | None = None, connect_timeout: float = CONNECT_TIMEOUT
) -> RDBStorage:
    url = with_driver(url)
    engine_kwargs = _engine_kwargs(url, connect_timeout)
    hb = heartbeat or {}
    for attempt in range(_RACE_ATTEMPTS):
        try:
            with optuna_experimental():  # heartbeat and retry
                retry = RetryHeartbeatStaleTrialCallback(max_retry=hb["max_retry"]) if hb else None
                return RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=hb.get("interval"),
                    grace_period=hb.get("grace_period"),
                    heartbeat_stale_trial_callback=retry,
                )
        except Exception as e:  # noqa: BLE001 - sorted below: a race is retried, anything else is one line
            if _is_creation_race(e) and attempt < _RACE_ATTEMPTS - 1:
                # The winner finishes creating the tables in well under a second; jitter keeps the losers apart.
                time.sleep(min(0.2 * 2**attempt, 5.0) * (0.5 + random.random()))
                continue
            first = first_line(e, 300)
            if "timeout" in first.lower() or "timed out" in first.lower():
                raise ConfigError(
                    f"the study storage {url} did not answer within {connect_timeout:g} s "
                    f"({described(e, 300)}); check that the server is up, or storage="
                ) from None
            raise ConfigError(f"cannot open the study storage {url}: {described(e, 300)}; check storage=") from None
    raise AssertionError("unreachable")


def sampler_of(spec: SweepSpec) -> optuna.samplers.BaseSampler:
    if spec.is_grid:
        return instantiate(spec.sampler, search_space=spec.grid_space())
    return instantiate(spec.sampler)


def open_study(spec: SweepSpec, storage: RDBStorage) -> optuna.Study:
    """Create the study, or join it when another worker (or an earlier run) created it.

    Only the worker that creates the study enqueues the spec's ``enqueue`` trials, so N
    workers starting together queue them once.
    """
    sampler, pruner = sampler_of(spec), instantiate(spec.pruner)
    try:
        study = optuna.create_study(
            study_name=spec.study, storage=storage, sampler=sampler, pruner=pruner, direction=spec.direction
        )
    except DuplicatedStudyError:
        study = optuna.load_study(study_name=spec.study, storage=storage, sampler=sampler, pruner=pruner)
        if study.direction.name.lower() != spec.direction:
            raise ConfigError(
                f"study {spec.study} in {spec.storage} is {study.direction.name.lower()}, the spec says "
                f"{spec.direction}; use another study=NAME"
            ) from None
        return study
    with optuna_experimental():
        study.set_metric_names([spec.metric])  # the dashboard's axis: val/acc_best, not "Objective 0"
    for params in spec.enqueue:
        study.enqueue_trial(params, skip_if_exists=True)
    return study


def fail_stale_trials(study: optuna.Study) -> None:
    """Mark trials of dead workers FAIL (and queue their retries) now, not only when the next trial starts."""
    with optuna_experimental():
        optuna.storages.fail_stale_trials(study)


def load_existing(spec: SweepSpec, storage: RDBStorage) -> optuna.Study:
    names = optuna.get_all_study_names(storage)
    if spec.study not in names:
        raise ConfigError(
            f"no study '{spec.study}' in {spec.storage} (has: {', '.join(names) or 'none'}); run the sweep first"
        )
    return optuna.load_study(study_name=spec.study, storage=storage)
