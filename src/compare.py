"""Compare runs: ``python src/compare.py [RUN_DIR ... | FOLDER | SWEEP_NAME] [sort=KEY] [order=asc|desc] [out=DIR]``.

Prints a markdown table (variant, transform, key and varying hyperparameters, val/acc_best,
test/acc, delta to the 99.46% committee in points, parameters, train time, img/s) and writes
it to ``<out>/compare.md`` with ``<out>/compare_val_acc.png`` (validation accuracy per epoch,
with the 99.46% line; ``x=minutes``: per wall minute, ``compare_val_acc_minutes.png``). A sweep
name means ``outputs/sweeps/<name>/trial_*/``; no target means every run under ``outputs/runs``. Reads local files only.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # runs from a checkout without `pip install -e .`

from stnlab.cli import run_cli  # noqa: E402
from stnlab.errors import ConfigError  # noqa: E402
from stnlab.evaluation.args import Option, parse  # noqa: E402
from stnlab.evaluation.compare import X_AXES  # noqa: E402

OPTIONS = {
    "sort": Option("val/acc_best", "column to sort by (e.g. test/acc, params, train_s, optim.lr)"),
    "order": Option("desc", "desc (largest first) or asc"),
    "out": Option(None, "folder for compare.md and compare_val_acc.png "
                        "(default outputs/sweeps/<name> for one sweep, else outputs/compare)"),
    "outputs": Option("outputs", "the outputs folder holding runs/ and sweeps/"),
    "x": Option("epoch", "x axis of the validation plot: epoch, or minutes (time to accuracy)"),
}


def main(argv: list[str]) -> None:
    values, _, targets = parse(argv, OPTIONS, "compare.py", __doc__.strip(),
                               positional="[RUN_DIR | FOLDER | SWEEP_NAME ...]", data_overrides=False)
    if values["order"] not in ("asc", "desc"):
        raise ConfigError(f"order={values['order']} must be asc or desc")
    if values["x"] not in X_AXES:
        raise ConfigError(f"x={values['x']} must be one of {', '.join(X_AXES)}")
    from stnlab.evaluation.compare import curves, find_runs, markdown, read_runs, table
    from stnlab.evaluation.plots import plot_val_curves

    outputs = Path(values["outputs"])
    runs = read_runs(find_runs(targets, outputs), values["x"])
    rows, columns = table(runs, values["sort"], ascending=values["order"] == "asc")
    text = markdown(rows, columns)
    sweep = len(targets) == 1 and not Path(targets[0]).exists() and (outputs / "sweeps" / targets[0]).is_dir()
    out = Path(values["out"]) if values["out"] else (outputs / "sweeps" / targets[0] if sweep else outputs / "compare")
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text(f"# {len(rows)} runs, sorted by {values['sort']} ({values['order']})\n\n{text}\n")
    png = plot_val_curves(curves(runs, rows), out / f"compare_val_acc{'_minutes' if values['x'] == 'minutes' else ''}.png",
                          x=values["x"])
    print(text)
    print(f"\nwrote {out / 'compare.md'}, {png}")


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
