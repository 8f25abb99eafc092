"""The study report: configurations ranked by mean ± std of the objective, set against the 99.46% committee.

Trials are grouped by their params except ``group_ignore`` (the seed), so each row is one
configuration averaged over its seeds (and, with successive halving, one rung: the longest runs
rank first). Written to ``<out_dir>/<study>/report.md`` with ``report.png`` (the ranking) and
``curves.png`` (every trial's validation against wall minutes), every trial's rung, epochs and
minutes, and, as a W&B run of the study's group with ``job_type=report``, as a ``wandb.Table``
and the charts.
"""

from __future__ import annotations

import hashlib
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from matplotlib.figure import Figure
from optuna.trial import TrialState

from stnlab import IDSIA_COMMITTEE_ACC, committee_delta
from stnlab.config.schema import VAL_EPOCH_METRICS
from stnlab.evaluation.compare import read_curve
from stnlab.evaluation.plots import committee_line, save
from stnlab.files import write_text_whole
from stnlab.markdown import table as markdown_table
from stnlab.sweeps.callbacks import describe
from stnlab.sweeps.spec import SweepSpec
from stnlab.tracking.wandb_logger import open_run

TEST_KEY = "test/acc"


@dataclass
class Row:
    """One configuration: its params (seed excluded) and the results of its complete trials."""

    config: dict[str, Any]
    rung: int = 0
    trials: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    tests: list[float] = field(default_factory=list)
    gtsrb: bool = True  # every trial trained on GTSRB: the committee's 99.46% applies
    full_test: bool = True  # every test covered the whole official test set (not trainer.limit_test_batches)

    @property
    def label(self) -> str:
        return (describe(self.config) or "(fixed config)") + (f" [rung {self.rung}]" if self.rung else "")

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if self.n > 1 else 0.0

    @property
    def test_mean(self) -> float | None:
        return statistics.fmean(self.tests) if len(self.tests) == self.n else None

    @property
    def test_std(self) -> float:
        return statistics.stdev(self.tests) if len(self.tests) > 1 else 0.0

    def delta(self, metric: str) -> tuple[float | None, str]:
        """Points above the committee: on test/acc when every trial has it over the whole official test set,
        else on an accuracy objective; none for other data than GTSRB."""
        if not self.gtsrb:
            return None, ""
        if self.test_mean is not None and self.full_test:
            return committee_delta({"test/acc": self.test_mean})
        if "acc" in metric:
            return committee_delta({"val/acc_best": self.mean})  # the objective's accuracy, said to be "val"
        return None, ""


def rows(study: optuna.Study, spec: SweepSpec) -> list[Row]:
    """Complete trials grouped by configuration, best first."""
    groups: dict[tuple, Row] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        config = {k: v for k, v in t.params.items() if k not in spec.group_ignore}
        rung = int(t.user_attrs.get("rung", 0))
        key = (rung, tuple(sorted(config.items(), key=lambda kv: kv[0])))
        row = groups.setdefault(key, Row(config, rung))
        row.trials.append(t.number)
        row.gtsrb = row.gtsrb and t.user_attrs.get("data", "gtsrb") == "gtsrb"
        row.values.append(float(t.value))
        metrics = t.user_attrs.get("metrics") or {}
        if metrics.get(TEST_KEY) is not None:
            row.tests.append(float(metrics[TEST_KEY]))
            row.full_test = row.full_test and committee_delta(metrics)[1] == "test"
    sign = -1 if spec.direction == "maximize" else 1
    return sorted(groups.values(), key=lambda r: (-r.rung, sign * r.mean))


def _pct(mean: float | None, std: float, n: int) -> str:
    if mean is None:
        return "—"
    return f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if n > 1 else "")


def table(table_rows: list[Row], metric: str) -> tuple[list[str], list[list[Any]]]:
    """Markdown-ready columns and cells (also the W&B table)."""
    columns = [
        "rank",
        "configuration",
        "rung",
        "n",
        f"{metric} (%)",
        f"{TEST_KEY} (%)",
        f"Δ vs {IDSIA_COMMITTEE_ACC} (pts)",
        "trials",
    ]
    cells = []
    for rank, r in enumerate(table_rows, 1):
        delta, on = r.delta(metric)
        cells.append(
            [
                rank,
                describe(r.config) or "(fixed config)",
                r.rung,
                r.n,
                _pct(r.mean, r.std, r.n),
                _pct(r.test_mean, r.test_std, r.n),
                "—" if delta is None else f"{delta:+.2f}" + ("" if on == "test" else " (val)"),
                ", ".join(map(str, r.trials)),
            ]
        )
    return columns, cells


def markdown(study: optuna.Study, spec: SweepSpec, table_rows: list[Row], chart: Path | None) -> str:
    trials = study.get_trials(deepcopy=False)
    counts = {s: sum(t.state == s for t in trials) for s in TrialState}
    lines = [
        f"# Sweep `{spec.study}`",
        "",
        f"Objective `{spec.metric}` ({spec.direction}), sampler `{spec.sampler['_target_'].rsplit('.', 1)[-1]}`, "
        f"pruner `{spec.pruner['_target_'].rsplit('.', 1)[-1]}`, budget {spec.budget() or 'none'} trials.",
        "Trials: " + ", ".join(f"{counts[s]} {s.name.lower()}" for s in TrialState if counts[s]) + ".",
        "Configurations are grouped over "
        + (", ".join(spec.group_ignore) or "nothing")
        + f"; mean ± std in %; Δ = 100·acc − {IDSIA_COMMITTEE_ACC} (the IDSIA committee), on {TEST_KEY} "
        "where every trial of the row has it, else on the objective (val).",
        "",
    ]
    columns, cells = table(table_rows, spec.metric)
    lines += markdown_table(columns, cells or [["—"] * len(columns)])
    if chart is not None:
        lines += ["", f"![{spec.study}]({chart.name})"]
    lines += trial_table(study, spec)
    curves = spec.study_dir / "curves.png"
    if curves.is_file():
        lines += ["", f"![validation against wall minutes]({curves.name})"]
    others = [t for t in trials if t.state in (TrialState.PRUNED, TrialState.FAIL)]
    if others:
        rows = []
        for t in others:
            reason = t.user_attrs.get("fail_reason") or t.user_attrs.get("prune_reason") or ""
            if t.state == TrialState.FAIL and not reason:
                reason = "worker died (heartbeat stale)"
            rows.append(
                [t.number, t.state.name, describe(t.params), len(t.intermediate_values), reason.replace("|", "/")]
            )
        lines += ["", "## Pruned and failed trials", ""]
        lines += markdown_table(["trial", "state", "params", "epochs", "reason"], rows)
    return "\n".join(lines) + "\n"


def trial_table(study: optuna.Study, spec: SweepSpec) -> list[str]:
    """Every finished trial: rung, epochs, wall minutes, projected full-run minutes, objective, params."""
    finished = [t for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    if not finished:
        return []
    lines = [
        "",
        "## Every trial",
        "",
        "Wall minutes are the trial's fit (validation included) on one worker"
        + (
            f"; projected minutes are its configuration's full run on every training image with the whole "
            f"machine (limit {spec.time_limit.minutes:g}, speed-up {spec.time_limit.speedup:g})."
            if spec.time_limit
            else "."
        ),
        "",
    ]
    rows = []
    for t in finished:
        a = t.user_attrs
        value = f"{100 * t.value:.2f}" if t.value is not None and "acc" in spec.metric else (t.value or "—")
        projected = a.get("projected_minutes")
        rows.append(
            [t.number, t.state.name.lower(), a.get("rung", 0), a.get("epochs", "—"), a.get("wall_minutes", "—")]
            + ["—" if projected is None else f"{projected:.1f}", value, describe(t.params)]
        )
    columns = ["trial", "state", "rung", "epochs", "wall min", "projected min", f"{spec.metric} (%)", "params"]
    return lines + markdown_table(columns, rows, align="rlrrrrrl")


def curves_chart(study: optuna.Study, spec: SweepSpec, path: Path) -> Path | None:
    """Every trial's validation metric against the wall minutes of its fit, one line per trial, by rung."""
    metric = spec.metric.removesuffix("_best")  # the per-epoch metric behind the objective
    if metric not in VAL_EPOCH_METRICS:
        metric = spec.monitor
    lines = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        run_dir = t.user_attrs.get("run_dir")
        # By name in the study folder: the recorded path is relative to the worker's folder, and studies move.
        points = read_curve(spec.study_dir / Path(run_dir).name, "minutes", metric=metric) if run_dir else []
        if points:
            lines.append((int(t.user_attrs.get("rung", 0)), t.number, points))
    if not lines:
        return None
    fig = Figure(figsize=(9, 5.5))
    ax = fig.add_subplot()
    colors = ["tab:gray", "tab:blue", "tab:orange", "tab:green", "tab:red"]
    seen = set()
    for rung, _number, points in sorted(lines):
        xs, ys = zip(*points)
        label = f"rung {rung}" if rung not in seen else None
        seen.add(rung)
        ax.plot(xs, [100 * y for y in ys], marker=".", lw=1, alpha=0.75, color=colors[rung % len(colors)], label=label)
    gtsrb = all(t.user_attrs.get("data", "gtsrb") == "gtsrb" for t in study.get_trials(deepcopy=False))
    if gtsrb:
        committee_line(ax)
    finals = [100 * p[-1][1] for _, _, p in lines]
    top = max(100 * y for _, _, p in lines for _, y in p)
    ax.set_ylim(max(0.0, min(top - 6, sorted(finals)[len(finals) // 4] - 1)), min(100.0, top + 0.5))
    ax.set_xlabel("wall minutes since the trial's fit started (one worker)")
    ax.set_ylabel(f"{metric} (%)")
    ax.set_title(f"sweep {spec.study}: {metric} of {len(lines)} trials against wall time")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return save(fig, path)


def bar_chart(table_rows: list[Row], spec: SweepSpec, path: Path) -> Path | None:
    """The objective (%) of each configuration as a dot with its std, ranked as the table, with the 99.46% line
    where the objective is a GTSRB accuracy. Dots, not bars: accuracies near 100% need no zero baseline."""
    if not table_rows:
        return None
    shown = table_rows[:40]
    accuracy = "acc" in spec.metric
    scale = 100 if accuracy else 1
    values = [scale * r.mean for r in shown]
    errors = [scale * r.std for r in shown]
    fig = Figure(figsize=(9, 1.6 + 0.3 * len(shown)))
    ax = fig.add_subplot()
    ax.errorbar(values, range(len(shown)), xerr=errors, fmt="o", color="tab:blue", capsize=3, label=spec.metric)
    if accuracy and all(r.gtsrb for r in shown):
        committee_line(ax, vertical=True)
    ax.set_yticks(range(len(shown)), [r.label[:90] for r in shown], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"{spec.metric}" + (" (%)" if accuracy else "") + ", mean ± std over the row's trials")
    ax.set_title(f"sweep {spec.study}: {len(shown)} configurations ranked by {spec.metric} (validation)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    return save(fig, path)


def log_to_wandb(spec: SweepSpec, table_rows: list[Row], chart: Path | None, wandb_cfg: dict) -> None:
    """A summary run of the study's W&B group: the ranking table and the chart."""
    columns, cells = table(table_rows, spec.metric)
    # The same id for every rewrite of the report: it updates one run.
    safe = "".join(c if c.isalnum() else "-" for c in spec.study.lower())[:40]
    run = open_run(
        wandb_cfg,
        spec.study_dir,
        f"{spec.study}-report",
        "report",
        {
            "sweep.study": spec.study,
            "sweep.metric": spec.metric,
            "sweep.direction": spec.direction,
            "sweep.budget": spec.budget(),
        },
        group=spec.study,
        tags=[f"study:{spec.study}"],
        run_id=f"report-{safe}-{hashlib.sha1(spec.study.encode()).hexdigest()[:8]}",
    )
    if run is None:
        return
    import wandb  # heavy to import (seconds): only the code that logs to W&B loads it

    data = [[str(c) for c in row] for row in cells]
    payload: dict[str, Any] = {"report/table": wandb.Table(columns=columns, data=data)}
    if chart is not None:
        payload["report/chart"] = wandb.Image(str(chart))
    curves = spec.study_dir / "curves.png"
    if curves.is_file():
        payload["report/curves"] = wandb.Image(str(curves))
    run.log(payload)
    if table_rows:
        best = table_rows[0]
        run.summary.update(
            {
                "best/configuration": best.label,
                "best/mean": best.mean,
                "best/n": best.n,
                "baseline/idsia_committee_acc": IDSIA_COMMITTEE_ACC / 100,
            }
        )
        delta, on = best.delta(spec.metric)
        if delta is not None:
            run.summary.update({"baseline/delta_vs_idsia": delta, "baseline/delta_measured_on": on})
    run.finish()


def write(study: optuna.Study, spec: SweepSpec, wandb_cfg: dict | None = None) -> Path:
    """report.md (+ report.png) in the study folder; also a W&B report run when ``wandb_cfg`` is given."""
    spec.study_dir.mkdir(parents=True, exist_ok=True)
    table_rows = rows(study, spec)
    chart = bar_chart(table_rows, spec, spec.study_dir / "report.png")
    curves_chart(study, spec, spec.study_dir / "curves.png")
    path = spec.study_dir / "report.md"
    write_text_whole(path, markdown(study, spec, table_rows, chart))  # workers finishing together: never half of it
    if wandb_cfg is not None:
        log_to_wandb(spec, table_rows, chart, wandb_cfg)
    return path
