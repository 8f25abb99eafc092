"""Multi-fidelity search: successive halving over whole runs, asynchronously (ASHA), and a time limit.

Why whole runs: a one-cycle schedule is sized to the run's length, so the accuracy after k epochs of a
long run is measured at a high step size, far from what the run ends with, and it ranks configurations
by how fast they learn early rather than by where they end. Here a trial at rung r is a complete run whose
length (``trainer.max_epochs``, or any ``key``) is ``fractions[r]`` of the configuration's own; its
schedule, warm-up and annealing included, is sized to that length, so every rung ends annealed and
compares finished runs (as Hyperband does with budgets trained from scratch). The cost is the rerun of
the promoted configurations: with ``eta`` = 4 and fractions 1/16, 1/4, 1 that is a third more than
stopping and continuing.

ASHA (Li et al. 2020): whenever a trial finishes, the best ``1/eta`` of each rung's finished trials that
are not promoted yet are queued for the next rung (Optuna's ``enqueue_trial``, with the same params and
``user_attrs`` ``rung``/``parent``). Workers run queued trials before drawing new configurations, so the
workers never wait for a rung to fill. The sampler draws only rung-0 configurations; its model sees every
finished trial (a promoted configuration's longer run counts as one more good observation of it).

The time limit: a configuration is feasible when its full run, on every training image and at the
speed of a whole machine, is projected to fit ``minutes``. The projection takes the trial's measured
training speed (images per second of its CPU time), times ``speedup`` (a 1-thread trial against the
machine's cores), over the full run's epochs of every training image. Infeasible trials are reported to
the sampler as violated constraints (``Trial.set_constraint``, which TPE reads) and are never promoted.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
import optuna
from optuna.trial import FrozenTrial, TrialState

from stnlab.errors import ConfigError

log = logging.getLogger(__name__)

RUNG, PARENT = "rung", "parent"
# Minutes a full run spends beside its training epochs (start, data, checkpoints, the test of 12,630 images).
OVERHEAD_MIN = 1.0
# The constraint's name: projected minutes of the full run minus the limit.
OVER_LIMIT = "minutes_over_limit"


@dataclass(frozen=True)
class Fidelity:
    """``key``: the override that sets a run's length; rung r runs ``fractions[r]`` of the configuration's
    value of it (rounded, at least 1); the best ``1/eta`` of a rung move up."""

    key: str
    fractions: tuple[float, ...]
    eta: int

    @property
    def top(self) -> int:
        return len(self.fractions) - 1

    def budget(self, full: int, rung: int) -> int:
        return max(1, int(round(full * self.fractions[rung])))


def parse_fidelity(node: Any) -> Fidelity | None:
    if not node:
        return None
    if not isinstance(node, dict) or set(node) - {"key", "fractions", "eta"}:
        raise ConfigError(f"fidelity takes {{key, fractions, eta}}, got {node!r}")
    fractions = node.get("fractions") or []
    try:
        fractions = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        raise ConfigError(f"fidelity.fractions={fractions} must be numbers") from None
    if not fractions or fractions[-1] != 1.0 or any(not 0 < a < b for a, b in zip(fractions, fractions[1:])):
        raise ConfigError(
            f"fidelity.fractions={list(fractions)} must rise strictly within (0, 1] and end at 1 (the full run)"
        )
    eta = node.get("eta", 3)
    if isinstance(eta, bool) or not isinstance(eta, int) or eta < 2:
        raise ConfigError(f"fidelity.eta={eta} must be an integer >= 2")
    return Fidelity(str(node.get("key") or "trainer.max_epochs"), fractions, eta)


@dataclass(frozen=True)
class TimeLimit:
    """A configuration's full run must be projected to take at most ``minutes`` on the whole machine."""

    minutes: float
    speedup: float

    def record(self, trial: optuna.Trial, projected: float) -> None:
        """The trial's projected minutes, and its constraint for the sampler (over the limit: > 0)."""
        trial.set_user_attr("projected_minutes", round(projected, 2))
        trial.set_constraint(OVER_LIMIT, projected - self.minutes)

    def projected_minutes(self, metrics: dict[str, Any], full_epochs: int) -> float | None:
        """The full run's minutes: its epochs over every training image (a refit: no validation) at the trial's
        measured training speed times ``speedup``, plus ``OVERHEAD_MIN`` (start, checkpoints, the test). None
        when the run did not report its speed.

        The speed is images per second of the trial's CPU time (``perf/train_img_per_cpu_s``; wall time where
        a run did not report it): other work on the machine, the other workers included, slows a trial's wall
        clock but not its CPU time, and a 1-thread trial's CPU time is its wall time alone. Training speed
        rather than the trial's whole fit time: a short trial's start and per-epoch validation would be
        multiplied into the projection."""
        speed = metrics.get("perf/train_img_per_cpu_s") or metrics.get("perf/train_img_per_s")
        train, val = metrics.get("data/train_images"), metrics.get("data/val_images") or 0
        if not speed or not train:
            return None
        return full_epochs * (train + val) / (speed * self.speedup) / 60 + OVERHEAD_MIN


def parse_time_limit(node: Any) -> TimeLimit | None:
    if not node:
        return None
    if not isinstance(node, dict) or set(node) - {"minutes", "speedup"}:
        raise ConfigError(f"time_limit takes {{minutes, speedup}}, got {node!r}")
    try:
        minutes, speedup = float(node["minutes"]), float(node.get("speedup", 1.0))
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"time_limit needs numbers minutes (and speedup), got {node!r}") from None
    if minutes <= 0 or speedup <= 0:
        raise ConfigError(f"time_limit.minutes={minutes} and time_limit.speedup={speedup} must be positive")
    return TimeLimit(minutes, speedup)


class TimeLimitGuard(pl.Callback):
    """Ends a trial as pruned once its first batches project the configuration's full run beyond the limit by
    more than ``margin``: such a configuration can never be promoted, and running its rung to the end would
    spend the most expensive trials of a search on nothing. Its projection is recorded either way."""

    def __init__(self, limit: TimeLimit, full_epochs: int, trial: optuna.Trial, skip: int = 10, measure: int = 30):
        self.limit, self.full_epochs, self.trial = limit, full_epochs, trial
        self.skip, self.measure, self.margin = skip, measure, 1.1
        self.batches, self.images, self.cpu_start = 0, 0, 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.batches += 1
        if self.batches == self.skip:  # after the first batches' allocations
            self.images, self.cpu_start = 0, time.process_time()
            return
        self.images += len(batch[1])
        if self.batches != self.skip + self.measure:
            return
        dm = trainer.datamodule
        speed = self.images / max(time.process_time() - self.cpu_start, 1e-9)
        sizes = {"data/train_images": len(dm.train), "data/val_images": len(dm.val) if dm.val is not None else 0}
        projected = self.limit.projected_minutes({"perf/train_img_per_cpu_s": speed, **sizes}, self.full_epochs)
        if projected is not None and projected > self.limit.minutes * self.margin:
            self.limit.record(self.trial, projected)
            self.trial.set_user_attr(
                "prune_reason",
                f"over the time limit: full run projected at {projected:.0f} min > {self.limit.minutes:g}",
            )
            raise optuna.TrialPruned("over the time limit")


def feasible(trial: FrozenTrial) -> bool:
    """No constraint over 0. Studies started before Optuna 5 keep theirs in the old format, which
    ``FrozenTrial.constraints`` reads too."""
    return all(c <= 0 for c in trial.constraints.values())


def rung_of(trial: FrozenTrial | optuna.Trial) -> int:
    return int(trial.user_attrs.get(RUNG, 0))


def _is_duplicate(trial: FrozenTrial) -> bool:
    return trial.state == TrialState.PRUNED and str(trial.user_attrs.get("prune_reason", "")).startswith("duplicate")


def _promoted(trials: list[FrozenTrial]) -> set[tuple[int, int]]:
    """(parent trial, rung) of every promotion made so far that is queued, running or ran (a failed one whose
    retry is queued counts through its retry; one that failed for good is due again)."""
    return {
        (int(t.user_attrs[PARENT]), rung_of(t))
        for t in trials
        if PARENT in t.user_attrs and t.state != TrialState.FAIL and not _is_duplicate(t)
    }


def due_promotions(study: optuna.Study, fidelity: Fidelity) -> list[FrozenTrial]:
    """Finished, feasible trials in the best ``1/eta`` of their rung that have no run at the next rung yet."""
    trials = study.get_trials(deepcopy=False)
    done = _promoted(trials)
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    due = []
    for rung in range(fidelity.top):
        finished = [t for t in trials if t.state == TrialState.COMPLETE and rung_of(t) == rung]
        ranked = sorted((t for t in finished if feasible(t)), key=lambda t: t.value, reverse=maximize)
        for t in ranked[: len(finished) // fidelity.eta]:
            if (t.number, rung + 1) not in done:
                due.append(t)
    return due


class Promote:
    """Study callback: queue the due promotions after every finished trial (every worker runs it)."""

    def __init__(self, fidelity: Fidelity):
        self.fidelity = fidelity

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        for t in due_promotions(study, self.fidelity):
            study.enqueue_trial(dict(t.params), user_attrs={RUNG: rung_of(t) + 1, PARENT: t.number})
            log.info("trial %d promoted to rung %d", t.number, rung_of(t) + 1)


def duplicate_of(trial: optuna.Trial) -> int | None:
    """Two workers may queue the same promotion at once; the lower-numbered copy runs, this one returns it. A
    failed copy (a dead or interrupted worker's, queued again) is no twin: its retry runs."""
    parent = trial.user_attrs.get(PARENT)
    if parent is None:
        return None
    for t in trial.study.get_trials(deepcopy=False):
        if (
            t.number < trial.number
            and t.user_attrs.get(PARENT) == parent
            and rung_of(t) == rung_of(trial)
            and (
                t.state in (TrialState.RUNNING, TrialState.COMPLETE)
                or (t.state == TrialState.PRUNED and not _is_duplicate(t))
            )
        ):
            return t.number
    return None


def sh_size(n_configs: int, fidelity: Fidelity) -> tuple[int, float]:
    """A full successive halving over ``n_configs`` rung-0 configurations: its trials, and its cost in full runs
    of one configuration."""
    trials, cost, n = 0, 0.0, n_configs
    for fraction in fidelity.fractions:
        trials += n
        cost += n * fraction
        n //= fidelity.eta
    return trials, cost
