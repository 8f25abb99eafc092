"""Study callbacks (called after every finished trial): the shared trial budget and the progress line."""

from __future__ import annotations

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from stnlab.noise import optuna_experimental


class TrialBudget:
    """Stops every worker once ``n_trials`` trials of the study have started, whoever started them.

    Like Optuna's ``MaxTrialsCallback``, but it also counts the trials running elsewhere (so
    N workers do not overshoot by N-1) and skips failed trials whose retry is queued (so a
    dead worker's trial is not counted twice). Queued (WAITING) trials are inside the
    budget: they run before any new trial is drawn.

    With successive halving (``new_only``), the budget counts new configurations only: promoted runs
    (user attr ``parent``) come on top, and a worker stops only once no trial is queued.
    """

    def __init__(self, n_trials: int | None, new_only: bool = False):
        self.n_trials = n_trials
        self.new_only = new_only

    def _counted(self, study: optuna.Study) -> list[FrozenTrial]:
        trials = study.get_trials(deepcopy=False)
        with optuna_experimental():
            retried = {n for t in trials for n in RetryHeartbeatStaleTrialCallback.retry_history(t)}
        return [
            t
            for t in trials
            if t.state != TrialState.WAITING
            and not (t.state == TrialState.FAIL and t.number in retried)
            and not (self.new_only and "parent" in t.user_attrs)
        ]

    def started(self, study: optuna.Study) -> int:
        return len(self._counted(study))

    def over(self, study: optuna.Study, number: int) -> bool:
        """Trial ``number`` is a new trial beyond the budget (two workers drew one each for its last place)."""
        if self.n_trials is None:
            return False
        counted = [t.number for t in self._counted(study)]
        return number in counted and sum(n <= number for n in counted) > self.n_trials

    def remaining(self, study: optuna.Study) -> int | None:
        """How many more trials may start (queued ones included); ``None`` without a budget."""
        if self.n_trials is None:
            return None
        return max(0, self.n_trials - self.started(study))

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if self.remaining(study) == 0 and not (self.new_only and queued(study)):
            study.stop()


def queued(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def describe(params: dict) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


class ProgressLine:
    """One line per finished trial: number, state, value, params, best so far."""

    def __init__(self, metric: str):
        self.metric = metric

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        state = trial.state.name
        if trial.state == TrialState.COMPLETE:
            outcome = f"{self.metric}={trial.value:.4f}"
            if "rung" in trial.user_attrs:
                outcome += f" (rung {trial.user_attrs['rung']}, {trial.user_attrs.get('epochs', '?')} epochs"
                if "projected_minutes" in trial.user_attrs:
                    outcome += f", full run ~{trial.user_attrs['projected_minutes']:.0f} min"
                outcome += ")"
        elif trial.state == TrialState.PRUNED:
            steps = sorted(trial.intermediate_values)
            outcome = trial.user_attrs.get("prune_reason") or (f"at epoch {steps[-1]}" if steps else "")
        else:
            outcome = trial.user_attrs.get("fail_reason", "")
        try:
            best = study.best_trial
            best_text = f"best {best.value:.4f} (trial {best.number})"
        except ValueError:
            best_text = "best -"
        seconds = trial.duration.total_seconds() if trial.duration else 0.0
        print(
            f"[{study.study_name}] trial {trial.number} {state:8s} {outcome} | {describe(trial.params)} | "
            f"{best_text} | {seconds:.1f}s",
            flush=True,
        )
