"""Where a study lives: an Optuna ``RDBStorage`` (SQLite by default, any SQLAlchemy URL for many workers).

Every worker beats a heartbeat while its trial runs; a trial whose worker died (no beat for
``grace_period`` seconds) is marked FAIL by the next worker and queued again by
``RetryHeartbeatStaleTrialCallback`` (the successor of ``RetryFailedTrialCallback``).
"""

from __future__ import annotations

import importlib.util
import time
import warnings
from pathlib import Path

import optuna
from hydra.utils import instantiate
from optuna.exceptions import DuplicatedStudyError, ExperimentalWarning
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from sqlalchemy.exc import IntegrityError, ProgrammingError

from stnlab.errors import ConfigError
from stnlab.sweeps.spec import SweepSpec



def with_driver(url: str) -> str:
    """SQLAlchemy 2.1 maps ``postgresql://`` to psycopg 3; the project ships psycopg2, so name it."""
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None:
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


def make_storage(url: str, heartbeat: dict[str, int] | None = None) -> RDBStorage:
    url = with_driver(url)
    engine_kwargs = {}
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": 60}}  # many local workers wait for the write lock
    hb = heartbeat or {}
    for attempt in range(3):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)  # heartbeat and retry are "experimental"
                retry = RetryHeartbeatStaleTrialCallback(max_retry=hb["max_retry"]) if hb else None
                return RDBStorage(
                    url, engine_kwargs=engine_kwargs, heartbeat_interval=hb.get("interval"),
                    grace_period=hb.get("grace_period"), heartbeat_stale_trial_callback=retry,
                )
        except (IntegrityError, ProgrammingError):
            # Workers starting together on a fresh database race to create Optuna's tables; the
            # losers find them made on the next try.
            if attempt == 2:
                raise
            time.sleep(1 + attempt)
        except Exception as e:  # bad URL, unreachable server, missing driver
            raise ConfigError(f"cannot open the study storage {url}: {type(e).__name__}: {e}; check storage=") from None
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
        study = optuna.create_study(study_name=spec.study, storage=storage, sampler=sampler, pruner=pruner,
                                    direction=spec.direction)
    except DuplicatedStudyError:
        study = optuna.load_study(study_name=spec.study, storage=storage, sampler=sampler, pruner=pruner)
        if study.direction.name.lower() != spec.direction:
            raise ConfigError(
                f"study {spec.study} in {spec.storage} is {study.direction.name.lower()}, the spec says "
                f"{spec.direction}; use another study=NAME"
            ) from None
        return study
    for params in spec.enqueue:
        study.enqueue_trial(params, skip_if_exists=True)
    return study


def fail_stale_trials(study: optuna.Study) -> None:
    """Mark trials of dead workers FAIL (and queue their retries) now, not only when the next trial starts."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def load_existing(spec: SweepSpec, storage: RDBStorage) -> optuna.Study:
    names = optuna.get_all_study_names(storage)
    if spec.study not in names:
        raise ConfigError(
            f"no study '{spec.study}' in {spec.storage} (has: {', '.join(names) or 'none'}); run the sweep first"
        )
    return optuna.load_study(study_name=spec.study, storage=storage)
