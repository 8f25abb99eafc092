"""One trial = one training run: Hydra compose (spec overrides, command line, trial params), then ``stnlab.training.run.train``.

Each trial writes to ``<out_dir>/<study>/trial_<n>/`` and logs an offline W&B run in group
``<study>`` with ``job_type=trial``; the trial number and params are in its config
(``sweep.trial``, ``sweep.params.<name>``). Validation accuracy is reported to Optuna after
every epoch by optuna-integration's ``PyTorchLightningPruningCallback``.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

import lightning.pytorch as pl
import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict
from optuna.distributions import CategoricalDistribution
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna_integration import PyTorchLightningPruningCallback

from stnlab.config import compose_train
from stnlab.config.schema import RUN_METRICS, VAL_EPOCH_METRICS, sense
from stnlab.errors import ConfigError, described, first_line
from stnlab.noise import optuna_experimental
from stnlab.sweeps.fidelity import RUNG, TimeLimitGuard, duplicate_of, rung_of
from stnlab.sweeps.space import overrides_of, suggest_all
from stnlab.sweeps.spec import SweepSpec
from stnlab.tracking.run_identity import mark_modified, run_name
from stnlab.training import run as training_run
from stnlab.training.interrupt import RunInterrupted

# Ctrl-C or SIGTERM: a run stopped by them (RunInterrupted, after its checkpoint), Lightning's SIGTERMException
# (a SystemExit) or its exit after a second Ctrl-C (SystemExit), a KeyboardInterrupt outside the fit.
INTERRUPTS = (KeyboardInterrupt, SystemExit, RunInterrupted)


def _keys(overrides: list[str]) -> set[str]:
    try:
        return {o.key_or_group for o in OverridesParser.create().parse_overrides(list(overrides))}
    except HydraException as e:
        raise ConfigError(f"bad override in {' '.join(overrides)}: {first_line(e, 400)}") from None


def check(spec: SweepSpec, overrides: list[str]) -> None:
    """Fail fast, before any trial: the metric and monitor are numbers a run reports, the fixed overrides
    compose, so does every param's override (a typo'd key, a config group choice that does not exist),
    and no searched key is also fixed."""
    check_metrics(spec)
    fixed = spec.overrides + overrides
    fixed_keys = _keys(fixed)
    compose_train(fixed)
    # Each value of each param, the other params at their first value (params that pick a preset, such as
    # the model, decide which keys the others may set).
    base = {name: _values(p)[0] for name, p in spec.params.items()}
    for param in spec.params.values():
        for value in _values(param):
            point = {**base, **{n: allowed[0] for n, allowed in param.when.items()}, param.name: value}
            active = {n: v for n, v in point.items() if spec.params[n].active(point)}
            param_overrides = param.overrides(value)
            keys = _keys(param_overrides)
            if keys & fixed_keys:
                raise ConfigError(
                    f"{', '.join(sorted(keys & fixed_keys))} is searched by sweep param {param.name}; "
                    "remove it from the fixed overrides / command line"
                )
            try:
                compose_train(fixed + overrides_of(spec.params, active))
            except ConfigError as e:
                raise ConfigError(f"sweep param {param.name}={value}: {e}; fix the key or value in params") from None


def _values(param) -> list[Any]:
    d = param.distribution
    return list(d.choices) if isinstance(d, CategoricalDistribution) else [d.low]


def check_metrics(spec: SweepSpec) -> None:
    """``metric`` must be a number a run returns and ``monitor`` one logged every validation epoch (else every
    trial trains to its end and fails, or pruning is silently off), each in the study's direction."""
    if spec.metric not in RUN_METRICS:
        raise ConfigError(f"metric={spec.metric} is not a number a run reports; use one of {', '.join(RUN_METRICS)}")
    if spec.monitor not in VAL_EPOCH_METRICS:
        raise ConfigError(
            f"monitor={spec.monitor} is not logged at the end of validation epochs (the pruner would "
            f"never see it); use one of {', '.join(VAL_EPOCH_METRICS)}"
        )
    for key, name in (("metric", spec.metric), ("monitor", spec.monitor)):
        if sense(name) and sense(name) != spec.direction:
            raise ConfigError(
                f"{key}={name} is to {sense(name)}, but direction={spec.direction}; "
                f"set direction={sense(name)} or pick another {key}"
            )


class RecordTrialState(pl.Callback):
    """Links the trial and its W&B run both ways (the trial's ``wandb_run_id``, ``wandb_run_name`` and
    ``wandb_run_path``; the run's ``sweep.*`` config), and writes ``sweep/state`` (complete, pruned, failed,
    interrupted) into the run's summary before ``train`` closes it."""

    def __init__(self, trial: optuna.Trial):
        self.trial = trial

    @staticmethod
    def _run():
        wandb = sys.modules.get("wandb")
        return wandb.run if wandb is not None else None

    def on_fit_start(self, trainer, pl_module) -> None:
        run = self._run()
        if run is None:
            return
        self.trial.set_user_attr("wandb_run_id", run.id)
        self.trial.set_user_attr("wandb_run_name", run.name)
        self.trial.set_user_attr("wandb_run_path", f"{run.project}/{run.id}")
        run.summary["sweep/state"] = "running"

    def on_fit_end(self, trainer, pl_module) -> None:
        run = self._run()
        if run is not None:
            run.summary["sweep/state"] = "complete"

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        run = self._run()
        if run is not None:
            state = "interrupted" if isinstance(exception, INTERRUPTS) else "failed"
            run.summary["sweep/state"] = "pruned" if isinstance(exception, optuna.TrialPruned) else state


def requeue(trial: optuna.Trial) -> None:
    """Queue a copy of an interrupted trial (same params), as the heartbeat does for a dead worker's."""
    frozen = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)
    with optuna_experimental():
        RetryHeartbeatStaleTrialCallback()(trial.study, frozen)


class Objective:
    """Callable for ``study.optimize``: returns ``metrics[spec.metric]`` of the trial's training run.

    ``conf_dir``: the study's config snapshot (stnlab.sweeps.snapshot), which every trial is composed from.
    With ``spec.fidelity``, a trial at rung r runs ``fractions[r]`` of its configuration's length."""

    def __init__(self, spec: SweepSpec, overrides: list[str], conf_dir=None, budget=None):
        self.spec = spec
        self.overrides = list(overrides)
        self.grid_size = spec.grid_size()
        self.conf_dir = conf_dir
        self.budget = budget  # a TrialBudget: a new trial drawn beyond it ends unrun

    def trial_config(self, number: int, params: dict[str, Any], rung: int = 0) -> DictConfig:
        spec = self.spec
        overrides = spec.overrides + self.overrides + overrides_of(spec.params, params)
        cfg = compose_train(overrides, self.conf_dir)
        sweep: dict[str, Any] = {"study": spec.study, "trial": number, "params": params, "rung": rung}
        with open_dict(cfg):
            if spec.fidelity is not None:
                full = OmegaConf.select(cfg, spec.fidelity.key)
                if not isinstance(full, int) or full < 1:
                    raise ConfigError(
                        f"fidelity.key={spec.fidelity.key} is {full!r} in the trial's config; it must be a positive integer"
                    )
                length = spec.fidelity.budget(full, rung)
                OmegaConf.update(cfg, spec.fidelity.key, length, merge=False)
                mark_modified(cfg, [*overrides, f"{spec.fidelity.key}={length}"])
                sweep["full_length"] = full
            cfg.run_dir = str(spec.study_dir / f"trial_{number}")
            cfg.wandb.group = spec.study
            cfg.wandb.job_type = "trial"
            cfg.wandb.name = f"{spec.study}-trial_{number}-{run_name(OmegaConf.to_container(cfg, resolve=True))}"
            cfg.wandb.tags = [*cfg.wandb.tags, f"study:{spec.study}"]
            cfg.sweep = sweep
        return cfg

    def _stop_if_grid_exhausted(self, trial: optuna.Trial) -> None:
        """GridSampler gives a new trial an unstarted grid point while there is one, else (the grid ran out
        while this worker was drawing) a point another trial holds: such a trial ends unrun."""
        if self.grid_size is None:
            return
        trials = trial.study.get_trials(deepcopy=False)
        me = next(t for t in trials if t.number == trial.number)
        with optuna_experimental():
            if RetryHeartbeatStaleTrialCallback.retried_trial_number(me) is not None:
                return  # a retry runs its own point again
        point = me.system_attrs.get("grid_id")
        if any(t.number != me.number and t.system_attrs.get("grid_id") == point for t in trials):
            trial.study.stop()
            trial.set_user_attr("prune_reason", "grid exhausted: its point ran in another trial")
            raise optuna.TrialPruned("grid exhausted")

    def __call__(self, trial: optuna.Trial) -> float:
        self._stop_if_grid_exhausted(trial)
        if self.budget is not None and self.budget.over(trial.study, trial.number):
            trial.set_user_attr("prune_reason", "the trial budget was spent while this worker drew it")
            raise optuna.TrialPruned("budget spent")
        twin = duplicate_of(trial) if self.spec.fidelity is not None else None
        if twin is not None:
            trial.set_user_attr("prune_reason", f"duplicate promotion: trial {twin} runs it")
            raise optuna.TrialPruned("duplicate promotion")
        params = suggest_all(self.spec.params, trial)
        rung = rung_of(trial)
        trial.set_user_attr(RUNG, rung)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        trial.set_user_attr("run_dir", str(self.spec.study_dir / f"trial_{trial.number}"))
        try:
            cfg = self.trial_config(trial.number, params, rung)
            trial.set_user_attr("data", str(cfg.data.get("name", "gtsrb")))
            epochs = cfg.trainer.get("max_epochs")
            if epochs is not None:
                trial.set_user_attr("epochs", int(epochs))
            callbacks = [RecordTrialState(trial)]
            if self.spec.fidelity is None:  # rungs compare finished runs: no pruning inside a trial
                callbacks.insert(0, PyTorchLightningPruningCallback(trial, monitor=self.spec.monitor))
            if self.spec.time_limit is not None:
                callbacks.append(TimeLimitGuard(self.spec.time_limit, self._full_epochs(cfg), trial))
            metrics = training_run.train(cfg, extra_callbacks=callbacks)  # looked up per trial: tests replace it
            numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
            trial.set_user_attr("metrics", numbers)
            trial.set_user_attr("wall_minutes", round(float(metrics.get("time/fit_s", 0.0)) / 60, 3))
            if self.spec.time_limit is not None:
                projected = self.spec.time_limit.projected_minutes(numbers, self._full_epochs(cfg))
                if projected is not None:
                    self.spec.time_limit.record(trial, projected)
            if self.spec.metric not in metrics:
                raise ConfigError(f"metric={self.spec.metric} is not among the run's metrics {sorted(metrics)}")
            return float(metrics[self.spec.metric])
        except optuna.TrialPruned:
            raise
        except INTERRUPTS as e:
            requeue(trial)
            trial.set_user_attr("fail_reason", "interrupted; queued again for the next run")
            raise KeyboardInterrupt from e
        except Exception as e:  # recorded, then Optuna marks the trial FAIL and the study goes on
            trial.set_user_attr("fail_reason", described(e, 400))
            raise

    def _full_epochs(self, cfg: DictConfig) -> int:
        """The epochs of the configuration's full run (this trial's, unless its rung runs a fraction of them)."""
        epochs = int(cfg.trainer.get("max_epochs") or 0)
        if self.spec.fidelity and self.spec.fidelity.key == "trainer.max_epochs":
            return int(cfg.sweep.get("full_length", epochs))
        return epochs
