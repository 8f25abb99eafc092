"""One worker's share of a study: run (or join, or resume) it, then report (``src/sweep.py``'s loop).

Every worker runs the same command; they share the study through its storage. A rerun
continues the study: trial numbers go on, trials left RUNNING by a dead worker are failed
by the heartbeat check and queued again, and ``n_trials`` bounds the study's total.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from omegaconf import OmegaConf
from optuna.trial import TrialState

from stnlab.config import compose_train
from stnlab.sweeps import report, snapshot
from stnlab.sweeps.callbacks import ProgressLine, TrialBudget, queued
from stnlab.sweeps.fidelity import Promote
from stnlab.sweeps.objective import Objective, check
from stnlab.sweeps.spec import SweepSpec
from stnlab.sweeps.storage import fail_stale_trials, load_existing, make_storage, open_study


def _wandb_cfg(spec: SweepSpec, overrides: list[str]) -> dict:
    cfg = compose_train(spec.overrides + overrides)
    return OmegaConf.to_container(cfg.wandb, resolve=True)  # type: ignore[return-value]


POLL_S = 20.0  # how often an idle successive-halving worker looks for promotions


def _running(study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def run(spec: SweepSpec, overrides: list[str]) -> Path:
    """Run this worker's share of the study (or only rebuild the report); returns the report path."""
    if spec.report_only:
        storage = make_storage(spec.storage, spec.heartbeat)
        return report.write(load_existing(spec, storage), spec, _wandb_cfg(spec, overrides))
    check(spec, overrides)  # before the storage is touched: a mistake in the spec leaves nothing behind
    storage = make_storage(spec.storage, spec.heartbeat)
    study = open_study(spec, storage)
    snapshot.check_spec(study, spec.fingerprint())
    # Every trial is composed from the configs as they were when the study started.
    conf_dir = snapshot.conf_dir(study, spec.study_dir)
    fail_stale_trials(study)  # a dead worker's trial: FAIL, and queued again
    budget = TrialBudget(spec.budget(), new_only=spec.fidelity is not None)
    remaining = budget.remaining(study)
    print(
        f"[{spec.study}] storage {spec.storage}; {len(study.trials)} trials so far; "
        f"{'no trial budget' if remaining is None else f'{remaining} of {spec.budget()} left to start'}",
        flush=True,
    )
    running = _running(study)
    if remaining == 0 and running:
        print(
            f"[{spec.study}] {running} trials are running elsewhere; a dead worker's trial is queued again "
            f"once its heartbeat is {spec.heartbeat['grace_period']}s old: rerun then",
            flush=True,
        )
    callbacks = [budget, ProgressLine(spec.metric)]
    if spec.fidelity is not None:
        callbacks.insert(0, Promote(spec.fidelity))
        Promote(spec.fidelity)(study, None)  # promotions that a worker stopped before queueing
    objective = Objective(spec, overrides, conf_dir, budget)
    try:
        while remaining != 0 or queued(study):
            # No local trial count: the budget callback stops this worker when the study (all
            # workers, queued retries and promotions included) has started its n_trials.
            study.optimize(
                objective, timeout=spec.timeout, catch=(Exception,), callbacks=callbacks, gc_after_trial=True
            )
            remaining = budget.remaining(study)
            if spec.fidelity is None or spec.timeout is not None:
                break
            # Successive halving: trials running elsewhere may still promote configurations; wait for them.
            while not queued(study) and _running(study):
                time.sleep(POLL_S)
                fail_stale_trials(study)
            if not queued(study):
                break
    except KeyboardInterrupt:
        print(
            f"[{spec.study}] interrupted; the running trial is queued again: rerun the same command to resume",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(130) from None
    # The W&B report run is logged by the worker that sees the study finished (or by report_only).
    busy = study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
    path = report.write(study, spec, None if busy else _wandb_cfg(spec, overrides))
    print(
        f"[{spec.study}] report: {path}" + (f" ({len(busy)} trials still running elsewhere)" if busy else ""),
        flush=True,
    )
    return path
