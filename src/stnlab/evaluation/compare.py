"""Comparison of finished runs from their folders: a table (terminal + markdown) and validation curves.

A run folder is any folder holding ``metrics.json`` (written by :func:`stnlab.training.run.train`).
Its config is read, in order of preference, from ``.hydra/config.yaml`` (runs started
by ``train.py`` without ``run_dir=``), ``csv/hparams.yaml`` (every run: Lightning
stores the module's ``cfg`` there) or the offline W&B run's config; its validation
curve from ``csv/metrics.csv``. Nothing needs the network.

Targets: run folders, folders holding runs (searched recursively), glob patterns, or
a sweep name, which means ``<outputs>/sweeps/<name>/trial_*/``. None: ``<outputs>/runs`` and
``<outputs>/multirun`` (``outputs`` is ``paths.outputs_dir``).
"""

from __future__ import annotations

import csv
import glob
import json
import logging
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from stnlab import IDSIA_COMMITTEE_ACC, committee_delta
from stnlab.errors import ConfigError, described, first_line
from stnlab.evaluation.plots import cut
from stnlab.markdown import row as markdown_row
from stnlab.tracking import runfile
from stnlab.tracking.run_identity import experiment_label, flat_config, modifications, unlogged, without_copies

log = logging.getLogger(__name__)

WIDTH = 120  # the terminal width the default table fits in
MAX_NAMED = 8  # differing keys named below a table that had no room for them
# Column: (header, format) of the run's identity and group, then of the measurements (after the keys that differ).
FIXED = {
    "run": ("run", "s"),
    "identity": ("identity", "s"),
    "group": ("group", "s"),
    "val/acc_best": ("val %", "pct"),
    "test/acc": ("test %", "pct"),
    "delta": (f"Δ {IDSIA_COMMITTEE_ACC}", "delta"),
    "params": ("params", "int"),
    "train_s": ("train", "time"),
    "img_per_s": ("img/s", "int"),
}
RESULTS = list(FIXED)[3:]
# Differing config keys shown first, in this order (then the others by name, the seed last).
FIRST_KEYS = (
    "model.name",
    "transform.name",
    "data.name",
    "data.image_size",
    "optim._target_",
    "optim.lr",
    "data.batch_size",
    "trainer.max_epochs",
    "augment._target_",
    "scheduler._target_",
)
# Short names of columns, also accepted by sort=.
ALIASES = {
    "variant": "model.name",
    "model": "model.name",
    "transform": "transform.name",
    "data": "data.name",
    "size": "data.image_size",
    "optim": "optim._target_",
    "lr": "optim.lr",
    "batch": "data.batch_size",
    "epochs": "trainer.max_epochs",
    "augment": "augment._target_",
    "scheduler": "scheduler._target_",
}
# Flat config keys never shown as differing: the identity (its own column), where files lie, how the run was
# logged and named, Hydra's choices (the values say it), a sweep's bookkeeping (its params are config keys
# already), Hydra flags and speed-neutral settings.
IGNORED_PREFIXES = ("identity.", "choices.", "wandb.", "logger.", "hydra.", "sweep.", "impl.", "paths.")
IGNORED_KEYS = {"run_dir", "resume", "data.root", "data.mirror", "data.path", "data.num_workers"}
IGNORED_SUFFIXES = ("_partial_", "_recursive_", "_convert_", ".download_timeout", ".download_retries")
IGNORED_PARTS = ("enable_progress_bar", "enable_model_summary", "log_every_n_steps", "T_max")


@dataclass
class Run:
    path: Path
    config: dict[str, Any]  # flat: {"model.name": ..., "optim.lr": ...}
    metrics: dict[str, Any]
    curve: list[tuple[float, float]] = field(default_factory=list)  # (epoch or wall minutes, val/acc)


def read_config(run_dir: Path) -> dict[str, Any]:
    """The run's flat config from ``.hydra/config.yaml``, else ``csv/hparams.yaml``, else the offline W&B run."""
    hydra_cfg = run_dir / ".hydra" / "config.yaml"
    cfg = None
    if hydra_cfg.is_file():
        try:
            cfg = OmegaConf.load(hydra_cfg)
        except Exception as e:  # noqa: BLE001 - invalid YAML: the run's other records still say what it was
            error = first_line(e)
            log.warning("%s: unreadable (%s); reading the run's config from its CSV log instead", hydra_cfg, error)
    if isinstance(cfg, DictConfig):  # not a list
        try:
            nested = OmegaConf.to_container(cfg, resolve=True)
        except Exception:  # an interpolation that only resolves inside Hydra
            nested = OmegaConf.to_container(cfg, resolve=False)
        return _modified_from_overrides(run_dir, flat_config(without_copies(nested)))  # type: ignore[arg-type]
    hparams = run_dir / "csv" / "hparams.yaml"
    if hparams.is_file():
        data = yaml.safe_load(hparams.read_text()) or {}
        if isinstance(data.get("cfg"), dict):  # written before the config was logged flat
            return flat_config(data["cfg"])
        if isinstance(data, dict) and "model.name" in data:  # stnlab.tracking.run_identity.logged_config
            return unlogged(data)
    for offline in sorted(run_dir.glob("wandb/offline-run-*")):
        return unlogged({k: v for k, v in runfile.read_run(offline, wait_s=0).config.items() if not k.startswith("_")})
    return {}


def _modified_from_overrides(run_dir: Path, config: dict[str, Any]) -> dict[str, Any]:
    """Hydra saves a run's config before the run records ``identity.modified``: it comes from the command line
    Hydra saved beside it (``.hydra/overrides.yaml``)."""
    overrides = run_dir / ".hydra" / "overrides.yaml"
    if config.get("identity.modified") is None and overrides.is_file():
        try:
            given = yaml.safe_load(overrides.read_text())
        except yaml.YAMLError:
            given = None
        if isinstance(given, list):
            config["identity.modified"] = " ".join(modifications([str(o) for o in given]))
    return config


X_AXES = ("epoch", "minutes")
# The per-epoch accuracies compare.py can draw: validation from the CSV log, test from evaluate.py curve=true.
CURVES = ("val/acc", "val/acc_weighted", "test/acc")


def read_curve(
    run_dir: Path, x: str = "epoch", fit_s: float | None = None, metric: str = "val/acc"
) -> list[tuple[float, float]]:
    """``[(x, metric), ...]`` from the CSV log (one point per row that has ``metric``: val/acc, time/elapsed_min,
    ...), or for a ``test/...`` metric from ``eval/test_curve.csv`` (``evaluate.py curve=true``: every epoch's
    checkpoint scored).

    ``x="minutes"``: wall minutes since fit started at the end of that epoch (``time/elapsed_min``);
    runs logged before that column existed spread ``fit_s`` evenly over their epochs instead.
    """
    split = metric.split("/")[0]
    path = run_dir / "eval" / f"{split}_curve.csv" if split in ("test", "train") else run_dir / "csv" / "metrics.csv"
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


def read_run(run_dir: Path, x: str = "epoch", curve: str = "val/acc") -> Run:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    if not isinstance(metrics, dict):
        raise ValueError("not a JSON object")
    return Run(run_dir, read_config(run_dir), metrics, read_curve(run_dir, x, metrics.get("time/fit_s"), curve))


def read_runs(
    paths: Sequence[Path], x: str = "epoch", include_debug: bool = False, curve: str = "val/acc"
) -> list[Run]:
    """Every readable run of ``paths``; one that is not (a ``metrics.json`` being written or cut short, a
    corrupt CSV log) is skipped with a warning rather than failing the whole table; debug runs are left out
    unless ``include_debug``."""
    runs = []
    for path in paths:
        try:  # a JSONDecodeError is a ValueError
            runs.append(read_run(path, x, curve))
        except (OSError, ValueError, KeyError, TypeError, csv.Error, yaml.YAMLError) as e:
            error = described(e, 200)
            log.warning("skipping %s: its metrics.json or CSV log is unreadable (%s)", path, error)
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


def find_runs(targets: Sequence[str], outputs: Path | str | None = None) -> list[Path]:
    """Run folders named by ``targets`` (see the module docstring), in order, without duplicates. ``outputs``
    (``paths.outputs_dir``) is where sweep names, and no targets, are looked up."""
    sweeps = Path(outputs) / "sweeps" if outputs is not None else None
    found: list[Path] = []
    if not targets:
        if outputs is None:
            raise ConfigError("no runs given; name run folders, or the outputs folder holding runs/")
        # Those of <outputs>/runs and <outputs>/multirun that exist (runs, to be reported, when neither does).
        folders = [d for d in (Path(outputs) / "runs", Path(outputs) / "multirun") if d.is_dir()]
        targets = [str(d) for d in folders or [Path(outputs) / "runs"]]
    for target in targets:
        path = Path(target)
        if path.is_dir():
            hits = [path] if (path / "metrics.json").is_file() else sorted(p.parent for p in path.rglob("metrics.json"))
        elif any(c in target for c in "*?["):
            hits = sorted(Path(p) for p in glob.glob(target) if (Path(p) / "metrics.json").is_file())
        else:
            trials = (sweeps / target).glob("trial_*") if sweeps is not None else ()
            hits = sorted(p for p in trials if (p / "metrics.json").is_file())
        if not hits:
            sweep = f"a sweep name with runs in {sweeps / target / 'trial_*'}" if sweeps is not None else "a glob"
            raise ConfigError(
                f"no runs found for {target!r}: give run folders (with metrics.json), a folder of runs, or {sweep}"
            )
        found += [h for h in hits if h not in found]
    return found


def run_group(config: dict[str, Any], path: Path) -> str | None:
    """The run's W&B group: its ``wandb.group``, else the multirun it is a job of (``multirun-<date>_<time>``,
    as :func:`stnlab.training.run._join_multirun_group` names it; Hydra saved the config before that)."""
    if config.get("wandb.group"):
        return str(config["wandb.group"])
    parts = path.resolve().parts
    for i in range(len(parts) - 3, -1, -1):
        if parts[i] == "multirun":
            return f"multirun-{parts[i + 1]}_{parts[i + 2]}"
    return None


def all_gtsrb(runs: Sequence[Run]) -> bool:
    """Whether every run trained on GTSRB: only then is the committee's 99.46% a line to draw over them."""
    return all(r.config.get("data.name", "gtsrb") == "gtsrb" for r in runs)


def labels(paths: Sequence[Path]) -> list[str]:
    """The shortest trailing parts of each path that tell the runs apart (``trial_3``, ``2026-12-06/05-55-31-x``)."""
    parts = [p.resolve().parts for p in paths]
    for n in range(1, max(map(len, parts), default=1) + 1):
        names = ["/".join(ps[-n:]) for ps in parts]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in paths]


def row(run: Run) -> dict[str, Any]:
    """What a table row shows of ``run`` besides its config keys: identity, group and results."""
    c, m = run.config, run.metrics
    # The committee's 99.46% is a GTSRB figure (no delta for other data) measured on the whole test set.
    delta, on = committee_delta(m) if c.get("data.name", "gtsrb") == "gtsrb" else (None, "")
    identity = {"experiment": c.get("identity.experiment", "custom"), "modified": c.get("identity.modified")}
    return {
        "identity": experiment_label(identity) if c else None,
        "group": run_group(c, run.path),
        "variant": c.get("model.name"),
        "val/acc_best": m.get("val/acc_best"),
        "test/acc": m.get("test/acc"),
        "delta": delta,
        "delta_on": on if delta is not None else None,
        "params": m.get("model/params"),
        "train_s": m.get("time/fit_s"),
        "img_per_s": m.get("perf/train_img_per_s"),
    }


def shown(config: dict[str, Any], key: str) -> Any:
    """A config value as the table shows it: class paths by their class name (``torch.optim.SGD`` -> ``SGD``)."""
    value = config.get(key)
    if key.endswith("._target_") or key == "_target_":
        return str(value).rsplit(".", 1)[-1] if value else "none"
    return value


def _ignored(key: str) -> bool:
    return (
        key in IGNORED_KEYS
        or key.startswith(IGNORED_PREFIXES)
        or key.endswith(IGNORED_SUFFIXES)
        or any(part in key for part in IGNORED_PARTS)
    )


def _same_values(runs: Sequence[Run], a: str, b: str) -> bool:
    return all(_dump(shown(r.config, a)) == _dump(shown(r.config, b)) for r in runs)


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def differing_keys(runs: Sequence[Run]) -> list[str]:
    """Config keys whose values differ between ``runs``, once each: not the :func:`_ignored` ones, not
    ``X._target_`` beside a differing ``X.name``, not a copy of an earlier key (``model.image_size`` beside
    ``data.image_size``); :data:`FIRST_KEYS` first, the seed last."""
    runs = [r for r in runs if r.config]  # a run whose config was not found differs in nothing we know
    if len(runs) < 2:
        return []
    keys = [k for k in set().union(*(r.config for r in runs)) if not _ignored(k)]
    keys = [k for k in keys if len({_dump(shown(r.config, k)) for r in runs}) > 1]
    keys.sort(key=lambda k: (k == "seed", FIRST_KEYS.index(k) if k in FIRST_KEYS else len(FIRST_KEYS), k))
    out: list[str] = []
    for k in keys:
        if k.endswith("._target_") and k.removesuffix("_target_") + "name" in keys:
            continue
        if any(k.rsplit(".", 1)[-1] == o.rsplit(".", 1)[-1] and _same_values(runs, k, o) for o in out):
            continue
        out.append(k)
    return out


def table(
    runs: Sequence[Run], sort: str = "val/acc_best", ascending: bool = False, every_key: bool = False
) -> tuple[list[dict], list[str]]:
    """Rows sorted by ``sort`` (missing values last) and the column keys: the run, its identity and group, the
    config keys that differ between the runs (``every_key``: all of them), then the results."""
    keys = sorted(k for k in set().union(*(r.config for r in runs))) if every_key else differing_keys(runs)
    sort = ALIASES.get(sort, sort)
    known = {k for r in runs for k in r.config} | set(RESULTS)
    rows = []
    for label, r in zip(labels([r.path for r in runs]), runs):
        d = {"run": label, **row(r), **{k: shown(r.config, k) for k in keys}}
        if sort in r.config:
            d.setdefault(sort, shown(r.config, sort))
        rows.append(d)
    group = ["group"] if any(d["group"] for d in rows) or every_key else []
    columns = ["run", "identity", *group, *keys, *RESULTS]
    if sort not in known and sort not in columns:
        raise ConfigError(f"sort={sort} is not a column or a config key; choose from {', '.join(columns)}")

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
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def headers(columns: Sequence[str], full: bool = False) -> dict[str, str]:
    """Column headers: the fixed ones, the short names of :data:`ALIASES`, else the shortest dotted suffix of the
    key that no other column ends with (``full``: the keys as they are)."""
    short = {key: name for name, key in ALIASES.items() if name != "variant"}
    names = [c.removesuffix("._target_") for c in columns]
    out = {}
    for col, name in zip(columns, names):
        if col in FIXED:
            out[col] = FIXED[col][0]
        elif full:
            out[col] = col
        elif col in short:
            out[col] = short[col]
        else:
            out[col] = _unique_suffix(name, [n for n in names if n != name])
    return out


def _unique_suffix(name: str, others: Sequence[str]) -> str:
    parts = name.split(".")
    for n in range(1, len(parts)):
        tail = ".".join(parts[-n:])
        if not any(o == tail or o.endswith("." + tail) for o in others):
            return tail
    return name


def markdown(rows: Sequence[dict], columns: Sequence[str], width: int | None = WIDTH) -> str:
    """A GitHub-flavoured markdown table, padded to line up in a terminal, numbers right-aligned.

    With a ``width``, long cells are cut and config-key columns are left out, from the last, until the table
    fits; a line below names them. ``width=None``: every column, full key names."""
    kinds = {c: FIXED[c][1] if c in FIXED else _kind(d.get(c) for d in rows) for c in columns}
    cells = {c: [cut(_fmt(d.get(c), kinds[c], d), 28 if width else None) for d in rows] for c in columns}
    heads = headers(columns, full=width is None)
    sizes = {c: max(len(heads[c]), *(len(v) for v in cells[c])) for c in columns}
    shown_cols, left_out = list(columns), []
    while width and sum(sizes[c] + 3 for c in shown_cols) + 1 > width:
        keys = [c for c in shown_cols if c not in FIXED]
        if not keys:
            break
        shown_cols.remove(keys[-1])
        left_out.insert(0, keys[-1])

    def cell(text: str, c: str) -> str:
        return text.ljust(sizes[c]) if kinds[c] == "s" else text.rjust(sizes[c])

    def line(texts: dict[str, str]) -> str:
        return markdown_row(cell(texts[c], c) for c in shown_cols)

    rule = "|" + "|".join("-" * (sizes[c] + 2) if kinds[c] == "s" else "-" * (sizes[c] + 1) + ":" for c in shown_cols)
    lines = [line(heads), rule + "|"] + [line({c: cells[c][i] for c in columns}) for i in range(len(rows))]
    if left_out:
        named = ", ".join(left_out[:MAX_NAMED]) + (
            f" and {len(left_out) - MAX_NAMED} more" if len(left_out) > MAX_NAMED else ""
        )
        note = f"Also differing, left out to fit {width} columns: {named} (all=true shows every key)."
        lines += ["", *textwrap.wrap(note, width, break_on_hyphens=False)]
    return "\n".join(lines)


def _kind(values) -> str:
    """``s`` (left-aligned text) unless every value is a number or missing."""
    numbers = all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values)
    return "g" if numbers else "s"


def curves(runs: Sequence[Run], rows: Sequence[dict]) -> dict[str, list[tuple[float, float]]]:
    """Validation curves in the table's order, keyed ``<run> (<variant>)``."""
    by_label = dict(zip(labels([r.path for r in runs]), (r.curve for r in runs)))
    return {f"{d['run']} ({d['variant']})": by_label[d["run"]] for d in rows}
