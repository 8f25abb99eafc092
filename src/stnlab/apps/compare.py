"""Compare runs: ``python src/compare.py ['runs=[RUN_DIR | FOLDER | SWEEP_NAME, ...]'] [sort=KEY] [order=asc|desc]``.

Prints the runs' table (:mod:`stnlab.evaluation.compare`) and writes it with their curves; reads local files
only. The keys, and what is written where, are those of ``conf/compare.yaml`` (``--help``).
"""

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from stnlab.config import checks
from stnlab.errors import ConfigError
from stnlab.evaluation.compare import CURVES, WIDTH, X_AXES, all_gtsrb, curves, find_runs, markdown, read_runs, table
from stnlab.evaluation.plots import save, val_curves_figure


def compare(cfg: DictConfig) -> None:

    values = OmegaConf.to_container(cfg, resolve=True)
    if values["order"] not in ("asc", "desc"):
        raise ConfigError(f"order={values['order']} must be asc or desc")
    checks.one_of("x", values["x"], X_AXES)
    checks.one_of("curve", values["curve"], CURVES)
    y_min = checks.optional(checks.number, "y_min", values["y_min"])
    if y_min is not None and not 0 <= y_min < 100:
        raise ConfigError(f"y_min={y_min} is an accuracy in %: set 0 <= y_min < 100, or y_min=null to fit every point")
    targets = checks.words("runs", values["runs"])
    outputs = Path(values["outputs"])
    runs = read_runs(
        find_runs(targets, outputs),
        values["x"],
        include_debug=checks.boolean("include_debug", values["include_debug"]),
        curve=values["curve"],
    )
    every_key = checks.boolean("all", values["all"])
    rows, columns = table(runs, str(values["sort"]), ascending=values["order"] == "asc", every_key=every_key)
    text = markdown(rows, columns, width=None if every_key else WIDTH)
    sweep = len(targets) == 1 and not Path(targets[0]).exists() and (outputs / "sweeps" / targets[0]).is_dir()
    out = Path(values["out"]) if values["out"] else (outputs / "sweeps" / targets[0] if sweep else outputs / "compare")
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text(f"# {len(rows)} runs, sorted by {values['sort']} ({values['order']})\n\n{text}\n")
    stem = values["curve"].replace("/", "_")
    name = f"compare_{stem}{'_minutes' if values['x'] == 'minutes' else ''}.png"
    figure = val_curves_figure(curves(runs, rows), values["x"], all_gtsrb(runs), values["curve"], y_min)
    png = save(figure, out / name)
    print(text)
    print(f"\nwrote {out / 'compare.md'}, {png}")
