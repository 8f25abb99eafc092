"""Comparison of finished runs from their folders: a table (terminal + markdown) and validation curves.

A run folder is any folder holding ``metrics.json`` (written by :func:`stnlab.training.run.train`).
Its config is read, in order of preference, from ``.hydra/config.yaml`` (runs started
by ``train.py`` without ``run_dir=``), ``csv/hparams.yaml`` (every run: Lightning
stores the module's ``cfg`` there) or the offline W&B run's config; its validation
curve from ``csv/metrics.csv``. Nothing needs the network.

Targets: run folders, folders holding runs (searched recursively), glob patterns, or
a sweep name, which means ``outputs/sweeps/<name>/trial_*/``. None: ``outputs/runs``.
"""

from __future__ import annotations

import csv
import glob
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from stnlab import IDSIA_COMMITTEE_ACC
from stnlab.errors import ConfigError
from stnlab.tracking.run_identity import flat_config, unlogged

log = logging.getLogger(__name__)

# (column, header, format); the table's fixed columns, after which come the hyperparameters that vary.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("run", "run", "s"),
    ("experiment", "experiment", "s"),
    ("variant", "variant", "s"),
    ("transform", "transform", "s"),
    ("optim", "optim", "s"),
    ("lr", "lr", "g"),
    ("batch", "batch", "g"),
    ("size", "size", "g"),
    ("augment", "augment", "s"),
    ("scheduler", "scheduler", "s"),
    ("epochs", "epochs", "g"),
    ("seed", "seed", "g"),
    ("val/acc_best", "val acc best %", "pct"),
    ("test/acc", "test acc %", "pct"),
    ("delta", f"Δ vs {IDSIA_COMMITTEE_ACC} (pts)", "delta"),
    ("params", "params", "int"),
    ("train_s", "train time", "time"),
    ("img_per_s", "img/s", "int"),
)
FIXED_KEYS = {
    "identity.experiment",
    "model.name",
    "transform.name",
    "optim._target_",
    "optim.lr",
    "data.batch_size",
    "data.image_size",
    "augment._target_",
    "augment",
    "scheduler._target_",
    "scheduler",
    "trainer.max_epochs",
    "seed",
}
# Flat config keys never shown as "varying": paths, logging and derived values.
IGNORED_PARTS = (
    "identity.",
    "choices.",
    "run_dir",
    "root",
    "mirror",
    "wandb.",
    "resume",
    "hydra",
    "_partial_",
    "model.image_size",
    "enable_progress_bar",
    "enable_model_summary",
    "download_",
    "num_workers",
    "T_max",
)


@dataclass
class Run:
    path: Path
    config: dict[str, Any]  # flat: {"model.name": ..., "optim.lr": ...}
    metrics: dict[str, Any]
    curve: list[tuple[float, float]] = field(default_factory=list)  # (epoch or wall minutes, val/acc)


def _short_target(target: Any) -> str:
    """``torch.optim.SGD`` -> ``SGD``; nothing -> ``none``."""
    return str(target).rsplit(".", 1)[-1] if target else "none"


def read_config(run_dir: Path) -> dict[str, Any]:
    """The run's flat config from ``.hydra/config.yaml``, else ``csv/hparams.yaml``, else the offline W&B run."""
    hydra_cfg = run_dir / ".hydra" / "config.yaml"
    try:
        cfg = OmegaConf.load(hydra_cfg) if hydra_cfg.is_file() else None
    except Exception as e:  # noqa: BLE001 - invalid YAML: the run's other records still say what it was
        log.warning(
            "%s: unreadable (%s); reading the run's config from its CSV log instead",
            hydra_cfg,
            (str(e).strip().splitlines() or [type(e).__name__])[0],
        )
        cfg = None
    if cfg is not None and not isinstance(cfg, DictConfig):
        cfg = None
    if cfg is not None:
        try:
            return flat_config(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
        except Exception:  # an interpolation that only resolves inside Hydra
            return flat_config(OmegaConf.to_container(cfg, resolve=False))  # type: ignore[arg-type]
    hparams = run_dir / "csv" / "hparams.yaml"
    if hparams.is_file():
        data = yaml.safe_load(hparams.read_text()) or {}
        if isinstance(data.get("cfg"), dict):  # written before the config was logged flat
            return flat_config(data["cfg"])
        if isinstance(data, dict) and "model.name" in data:  # stnlab.tracking.run_identity.logged_config
            return unlogged(data)
    for offline in sorted(run_dir.glob("wandb/offline-run-*")):
        from stnlab.tracking.runfile import read_run

        return unlogged({k: v for k, v in read_run(offline, wait_s=0).config.items() if not k.startswith("_")})
    return {}


X_AXES = ("epoch", "minutes")


def read_curve(
    run_dir: Path, x: str = "epoch", fit_s: float | None = None, metric: str = "val/acc"
) -> list[tuple[float, float]]:
    """``[(x, metric), ...]`` from the CSV log (one point per validation; ``metric`` defaults to val/acc).

    ``x="minutes"``: wall minutes since fit started at the end of that epoch (``time/elapsed_min``);
    runs logged before that column existed spread ``fit_s`` evenly over their epochs instead.
    """
    path = run_dir / "csv" / "metrics.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    points = [(float(r["epoch"]), float(r[metric])) for r in rows if r.get(metric)]
    if x == "epoch":
        return points
    elapsed = {float(r["epoch"]): float(r["time/elapsed_min"]) for r in rows if r.get("time/elapsed_min")}
    if elapsed:
        return [(elapsed[e], acc) for e, acc in points if e in elapsed]
    if fit_s and points:
        per_epoch = fit_s / 60 / (max(e for e, _ in points) + 1)
        return [((e + 1) * per_epoch, acc) for e, acc in points]
    return []


def read_run(run_dir: Path, x: str = "epoch") -> Run:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    if not isinstance(metrics, dict):
        raise ValueError("not a JSON object")
    return Run(run_dir, read_config(run_dir), metrics, read_curve(run_dir, x, metrics.get("time/fit_s")))


def read_runs(paths: Sequence[Path], x: str = "epoch", include_debug: bool = False) -> list[Run]:
    """Every readable run of ``paths``; one that is not (a ``metrics.json`` being written or cut short, a
    corrupt CSV log) is skipped with a warning rather than failing the whole table; debug runs are left out
    unless ``include_debug``."""
    runs = []
    for path in paths:
        try:
            runs.append(read_run(path, x))
        except (
            OSError,
            ValueError,
            KeyError,
            TypeError,
            csv.Error,
            yaml.YAMLError,
        ) as e:  # JSONDecodeError: a ValueError
            log.warning(
                "skipping %s: its metrics.json or CSV log is unreadable (%s: %s)",
                path,
                type(e).__name__,
                (str(e).strip().splitlines() or [""])[0][:200],
            )
    if not runs:
        raise ConfigError(
            f"none of the {len(paths)} run(s) found is readable (see the warnings); "
            "wait for running runs to finish, or give other runs"
        )
    debug = [r for r in runs if r.config.get("identity.debug") or r.config.get("trainer.fast_dev_run") is True]
    if debug and not include_debug:
        log.warning("left out %d debug run(s) (debug=..., fast_dev_run); include_debug=true shows them", len(debug))
        runs = [r for r in runs if r not in debug]
        if not runs:
            raise ConfigError("every run found is a debug run; pass include_debug=true to compare them")
    return runs


def find_runs(targets: Sequence[str], outputs: Path = Path("outputs")) -> list[Path]:
    """Run folders named by ``targets`` (see the module docstring), in order, without duplicates."""
    found: list[Path] = []
    defaults = [str(d) for d in (outputs / "runs", outputs / "multirun") if d.is_dir()] or [str(outputs / "runs")]
    for target in targets or defaults:
        path = Path(target)
        if path.is_dir():
            hits = [path] if (path / "metrics.json").is_file() else sorted(p.parent for p in path.rglob("metrics.json"))
        elif any(c in target for c in "*?["):
            hits = sorted(Path(p) for p in glob.glob(target) if (Path(p) / "metrics.json").is_file())
        else:
            hits = sorted(p for p in (outputs / "sweeps" / target).glob("trial_*") if (p / "metrics.json").is_file())
        if not hits:
            raise ConfigError(
                f"no runs found for {target!r}: give run folders (with metrics.json), a folder of runs, "
                f"or a sweep name with runs in {outputs / 'sweeps' / target / 'trial_*'}"
            )
        found += [h for h in hits if h not in found]
    return found


def _label(path: Path) -> str:
    parts = path.resolve().parts
    return "/".join(parts[-2:]) if len(parts) >= 2 else str(path)


def row(run: Run) -> dict[str, Any]:
    """One table row of ``run``: the :data:`COLUMNS` keys (missing values are ``None``)."""
    c, m = run.config, run.metrics
    test, val = m.get("test/acc"), m.get("val/acc_best")
    # The committee's 99.46% is a GTSRB figure: no delta for other data.
    ref = (test if test is not None else val) if c.get("data.name", "gtsrb") == "gtsrb" else None
    return {
        "run": _label(run.path),
        "experiment": c.get("identity.experiment", "custom" if c else None),
        "variant": c.get("model.name"),
        "transform": c.get("transform.name", "affine" if c else None),
        "optim": _short_target(c.get("optim._target_")) if c else None,
        "lr": c.get("optim.lr"),
        "batch": c.get("data.batch_size"),
        "size": c.get("data.image_size"),
        "augment": _short_target(c.get("augment._target_")) if c else None,
        "scheduler": _short_target(c.get("scheduler._target_")) if c else None,
        "epochs": c.get("trainer.max_epochs"),
        "seed": c.get("seed"),
        "val/acc_best": val,
        "test/acc": test,
        "delta": None if ref is None else 100 * ref - IDSIA_COMMITTEE_ACC,
        "delta_on": None if ref is None else ("test" if test is not None else "val"),
        "params": m.get("model/params"),
        "train_s": m.get("time/fit_s"),
        "img_per_s": m.get("perf/train_img_per_s"),
    }


def varying_keys(runs: Sequence[Run]) -> list[str]:
    """Flat config keys, other than the fixed columns' and :data:`IGNORED_PARTS`, whose values differ between runs."""
    if len(runs) < 2:
        return []
    keys = sorted(set().union(*(r.config for r in runs)))
    out = []
    for k in keys:
        if k in FIXED_KEYS or any(part in k for part in IGNORED_PARTS):
            continue
        values = {json.dumps(r.config.get(k), sort_keys=True, default=str) for r in runs}
        if len(values) > 1:
            out.append(k)
    return out


def table(runs: Sequence[Run], sort: str = "val/acc_best", ascending: bool = False) -> tuple[list[dict], list[str]]:
    """Rows (with the varying hyperparameters added) sorted by ``sort``, missing values last; and the column keys."""
    extra = varying_keys(runs)
    rows = []
    for r in runs:
        d = row(r)
        d.update({k: r.config.get(k) for k in extra})
        rows.append(d)
    split = [k for k, _, _ in COLUMNS].index("seed") + 1  # the varying hyperparameters go after the seed
    columns = [k for k, _, _ in COLUMNS[:split]] + extra + [k for k, _, _ in COLUMNS[split:]]
    if sort not in columns:
        raise ConfigError(f"sort={sort} is not a column; choose from {', '.join(columns)}")

    def missing(v):
        return v is None or (isinstance(v, float) and math.isnan(v))

    present = [d for d in rows if not missing(d.get(sort))]
    # Numbers before strings; within each, by value.
    present.sort(key=lambda d: (isinstance(d[sort], str), d[sort]), reverse=not ascending)
    rows = present + [d for d in rows if missing(d.get(sort))]
    return rows, columns


def _fmt(value: Any, kind: str, d: dict) -> str:
    if value is None:
        return "–"
    if kind == "pct":
        return f"{100 * value:.2f}"
    if kind == "delta":
        return f"{value:+.2f}" + (" (val)" if d.get("delta_on") == "val" else "")
    if kind == "int":
        return f"{value:,.0f}"
    if kind == "time":
        return f"{value / 60:.1f} min" if value >= 60 else f"{value:.1f} s"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def markdown(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """A GitHub-flavoured markdown table; numbers right-aligned."""
    spec = {k: (h, f) for k, h, f in COLUMNS}
    heads = [spec.get(k, (k, "g"))[0] for k in columns]
    align = ["---" if spec.get(k, (k, "g"))[1] == "s" else "---:" for k in columns]
    lines = ["| " + " | ".join(heads) + " |", "|" + "|".join(align) + "|"]
    for d in rows:
        lines.append("| " + " | ".join(_fmt(d.get(k), spec.get(k, (k, "g"))[1], d) for k in columns) + " |")
    return "\n".join(lines)


def curves(runs: Sequence[Run], rows: Sequence[dict]) -> dict[str, list[tuple[float, float]]]:
    """Validation curves in the table's order, keyed ``<run> (<variant>)``."""
    by_label = {_label(r.path): r.curve for r in runs}
    return {f"{d['run']} ({d['variant']})": by_label[d["run"]] for d in rows}
