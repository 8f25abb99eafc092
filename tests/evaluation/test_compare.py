"""Comparing finished runs from their folders: config sources, table, sorting, markdown, curves."""

from __future__ import annotations

import re
import shutil

import pytest
from PIL import Image

from conftest import run_app
from stnlab.errors import ConfigError
from stnlab.evaluation.compare import (
    Run,
    all_gtsrb,
    differing_keys,
    find_runs,
    headers,
    markdown,
    read_config,
    read_run,
    table,
)
from stnlab.evaluation.plots import save, val_curves_figure


def _compare_main(argv):
    run_app("compare", argv)


def test_config_sources_hydra_hparams_and_wandb(short_runs, tmp_path):
    # run_b has .hydra/config.yaml (unresolved interpolations resolve); run_a only csv/hparams.yaml.
    assert (short_runs["run_b"] / ".hydra" / "config.yaml").is_file()
    assert not (short_runs["run_a"] / ".hydra").exists()
    b, a = read_config(short_runs["run_b"]), read_config(short_runs["run_a"])
    assert b["optim.lr"] == 0.02 and b["optim.momentum"] == 0.9 and b["model.image_size"] == 32
    assert a["optim.lr"] == 0.003 and a["optim._target_"] == "torch.optim.Adam"
    # Without either, the offline W&B run's config.
    bare = tmp_path / "bare"
    shutil.copytree(short_runs["run_a"], bare, ignore=shutil.ignore_patterns("checkpoints", "hparams.yaml"))
    assert read_config(bare)["optim.lr"] == 0.003 and read_config(bare)["model.name"] == "no_st"


def test_table_of_two_runs(short_runs):
    runs = [read_run(p) for p in find_runs([str(short_runs["run_a"].parent)])]
    assert {r.path.name for r in runs} == {"run_a", "run_b"}
    rows, columns = table(runs, sort="lr", ascending=True)
    assert [r["run"] for r in rows] == ["run_a", "run_b"]  # the shortest end of the path that tells them apart
    a, b = rows
    assert (a["identity"], a["optim._target_"], a["optim.lr"], a["seed"]) == ("custom", "Adam", 0.003, 1)
    assert (b["optim._target_"], b["optim.lr"], b["seed"], b["optim.momentum"]) == ("SGD", 0.02, 2, 0.9)
    for row, run in zip(rows, runs if runs[0].path.name == "run_a" else runs[::-1]):
        m = run.metrics
        assert row["val/acc_best"] == m["val/acc_best"] and row["test/acc"] == m["test/acc"]
        assert row["delta"] is None  # 12 test images: not the official test set
        assert row["params"] == m["model/params"] and row["train_s"] == m["time/fit_s"]
        assert row["img_per_s"] == m["perf/train_img_per_s"]
    # Identity first, then only the keys that differ, then the results; no class-path or path noise.
    assert columns[:2] == ["run", "identity"] and columns[-6:][0] == "val/acc_best"
    keys = columns[2:-6]
    assert keys[:2] == ["optim._target_", "optim.lr"] and keys[-1] == "seed" and "optim.momentum" in keys
    assert not [k for k in keys if k.endswith(("_partial_", "root", "mirror", "run_dir")) or k.startswith("identity.")]
    assert "model.name" not in keys and "data.split_seed" not in keys  # equal in both runs
    desc, _ = table(runs, sort="lr")
    assert [r["optim.lr"] for r in desc] == [0.02, 0.003]
    text = markdown(rows, columns)
    header, rule, first, second = text.splitlines()
    assert "Δ 99.46" in header and "val %" in header and "| optim " in header and re.search(r"\| +lr \|", header)
    assert rule.count("|") == len(columns) + 1 and all(len(line) <= 120 for line in text.splitlines())
    assert "| Adam " in first and " 0.003 |" in first and "–" in first  # no delta


def test_every_key_with_all(short_runs):
    runs = [read_run(p) for p in find_runs([str(short_runs["run_a"].parent)])]
    rows, columns = table(runs, every_key=True)
    assert {"data.root", "optim._target_", "model.name", "data.split_seed", "group"} <= set(columns)
    text = markdown(rows, columns, width=None)
    assert "| data.split_seed |" in text.splitlines()[0]  # full key names


def _run(path, **config) -> Run:
    return Run(path, {"data.name": "gtsrb", **config}, {"val/acc_best": 0.9, "time/fit_s": 60.0})


def test_copies_of_a_key_and_class_paths_beside_names_are_shown_once(tmp_path):
    runs = [
        _run(tmp_path / "a", **{"model.name": "no_st", "sweep.params.model": "no_st", "model._target_": "x.Net"}),
        _run(tmp_path / "b", **{"model.name": "two_st", "sweep.params.model": "two_st", "model._target_": "y.Net"}),
    ]
    for r, size in zip(runs, (32, 48)):
        r.config.update({"data.image_size": size, "model.image_size": size})
    assert differing_keys(runs) == ["model.name", "data.image_size"]
    rows, columns = table(runs)
    assert headers(columns)["model.name"] == "model" and headers(columns)["data.image_size"] == "size"


def test_a_wide_comparison_fits_120_columns_and_names_what_it_left_out(tmp_path):
    runs = [_run(tmp_path / f"run{i}", **{f"module.knob_{k}": i * 10 + k for k in range(12)}, seed=i) for i in range(3)]
    rows, columns = table(runs)
    text = markdown(rows, columns)
    lines = text.splitlines()
    assert max(map(len, lines)) <= 120
    shown = [c for c in columns if c.startswith("module.") and re.search(rf"\| +{c.split('.')[-1]} \|", lines[0])]
    assert shown and len(shown) < 12
    note = " ".join(lines[lines.index("") + 1 :])
    assert note.startswith("Also differing, left out to fit 120 columns: module.knob_") and "all=true" in note


def test_the_multirun_group_is_a_column(tmp_path):
    job = tmp_path / "outputs" / "multirun" / "2026-12-06" / "05-55-31" / "0-no_st-affine-s1"
    runs = [_run(job, seed=1), _run(tmp_path / "single", seed=2, **{"wandb.group": "study_x"})]
    rows, columns = table(runs, sort="seed", ascending=True)
    assert columns[:3] == ["run", "identity", "group"]
    assert [r["group"] for r in rows] == ["multirun-2026-12-06_05-55-31", "study_x"]


def test_committee_line_only_when_every_run_is_gtsrb(tmp_path):
    gtsrb, synth = _run(tmp_path / "a"), _run(tmp_path / "b", **{"data.name": "synth"})
    assert all_gtsrb([gtsrb]) and not all_gtsrb([gtsrb, synth])


def test_val_curves_figure_is_titled_from_zero_and_draws_the_committee_only_when_asked(tmp_path):
    fig = val_curves_figure({"run_a (no_st)": [(0, 0.5)]}, "epoch", committee=False)
    (ax,) = fig.axes
    assert ax.get_title() == "Validation accuracy of 1 run, per epoch"
    assert ax.get_xlim()[0] == 0 and ax.get_xlim()[1] >= 1  # one epoch: a point at 1 on a readable axis
    assert [line.get_label() for line in ax.lines] == ["run_a (no_st)"]
    with_line = val_curves_figure({"a": [(0, 0.5), (1, 0.7)]}, "minutes", committee=True)
    assert any("IDSIA committee" in line.get_label() for line in with_line.axes[0].lines)
    zoomed = val_curves_figure({"a": [(0, 0.5), (1, 0.995)]}, "minutes", y_min=98)
    bottom, top = zoomed.axes[0].get_ylim()
    assert bottom == 98 and 99.5 < top <= 100  # the first point falls below the axis; the last and 99.46 are shown
    path = save(val_curves_figure({"a": [(0, 0.5), (1, 0.7)]}), tmp_path / "curves.png")
    width, height = Image.open(path).size
    assert 600 <= width <= 900 and 350 <= height <= 600


def test_compare_cli_writes_markdown_and_curves(short_runs, tmp_path, capsys):
    _compare_main([f"runs=[{short_runs['run_a']},{short_runs['run_b']}]", "sort=test/acc", f"out={tmp_path}"])
    printed = capsys.readouterr().out
    md = (tmp_path / "compare.md").read_text()
    assert md.startswith("# 2 runs, sorted by test/acc (desc)")
    table_lines = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(table_lines) == 3 and table_lines[0] in printed
    assert "run_a" in table_lines[1]  # run_a has the higher test accuracy
    assert (tmp_path / "compare_val_acc.png").read_bytes()[:4] == b"\x89PNG"


def test_time_to_accuracy_curves_use_logged_wall_minutes(short_runs, tmp_path):
    from stnlab.evaluation.compare import read_curve

    run = short_runs["run_a"]
    by_epoch, by_minute = read_curve(run), read_curve(run, "minutes")
    assert len(by_minute) == len(by_epoch) == 4
    minutes = [m for m, _ in by_minute]
    assert minutes == sorted(minutes) and minutes[0] > 0
    assert [a for _, a in by_minute] == [a for _, a in by_epoch]
    # A run logged before time/elapsed_min existed: its fit time spread over its epochs.
    old = tmp_path / "old"
    (old / "csv").mkdir(parents=True)
    (old / "csv" / "metrics.csv").write_text("epoch,val/acc\n0,0.5\n1,0.75\n")
    assert read_curve(old, "minutes", fit_s=240) == [(2.0, 0.5), (4.0, 0.75)]
    _compare_main([f"runs={run}", "x=minutes", f"out={tmp_path / 'cmp'}"])
    assert (tmp_path / "cmp" / "compare_val_acc_minutes.png").read_bytes()[:4] == b"\x89PNG"


def test_sweep_name_resolves_to_its_trials(short_runs, tmp_path):
    sweep = tmp_path / "outputs" / "sweeps" / "demo"
    for i, name in enumerate(("run_a", "run_b")):
        shutil.copytree(short_runs[name], sweep / f"trial_{i}", ignore=shutil.ignore_patterns("checkpoints", "wandb"))
    (sweep / "study.db").write_text("")
    found = find_runs(["demo"], tmp_path / "outputs")
    assert [p.name for p in found] == ["trial_0", "trial_1"]
    _compare_main(["runs=demo", f"outputs={tmp_path / 'outputs'}", "sort=params"])
    assert (sweep / "compare.md").is_file() and (sweep / "compare_val_acc.png").is_file()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["runs=nosuch"], "no runs found for 'nosuch'"),
        (["sort=colour"], "sort=colour is not a column"),
        (["order=up"], "order=up must be asc or desc"),
        (["x=hours"], "x=hours must be one of epoch, minutes"),
        (["y_min=high"], "y_min=high is not a number; set y_min=<number>"),
        (["y_min=99.9e1"], "y_min=999.0 is an accuracy in %: set 0 <= y_min < 100"),
        (["nosuch"], "Error parsing override 'nosuch'"),  # the spelling before Hydra: runs=nosuch
    ],
)
def test_compare_user_errors(argv, message, short_runs, capsys):
    extra = [] if "runs=" in argv[0] or "=" not in argv[0] else [f"runs={short_runs['run_a']}"]
    with pytest.raises(SystemExit) as exit_info:
        _compare_main(argv + extra)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_empty_folder_is_a_user_error(tmp_path):
    with pytest.raises(ConfigError, match="no runs found"):
        find_runs([str(tmp_path)])


@pytest.mark.parametrize("damage", ["half_written_metrics", "metrics_not_an_object", "bad_csv"])
def test_an_unreadable_run_is_skipped_with_a_warning(damage, short_runs, tmp_path, capsys, caplog):
    """Issue 16, item 7: one run being written (or cut short) failed the whole table with a traceback."""
    bad = tmp_path / "bad"
    shutil.copytree(short_runs["run_b"], bad, ignore=shutil.ignore_patterns("checkpoints", "wandb"))
    if damage == "half_written_metrics":
        text = (bad / "metrics.json").read_text()
        (bad / "metrics.json").write_text(text[: len(text) // 2])
    elif damage == "metrics_not_an_object":
        (bad / "metrics.json").write_text("[1, 2]")
    else:
        (bad / "csv" / "metrics.csv").write_text("epoch,val/acc\n0,abc\n")
    with caplog.at_level("WARNING"):
        _compare_main([f"runs=[{short_runs['run_a']},{bad}]", f"out={tmp_path / 'out'}"])
    assert (tmp_path / "out" / "compare.md").read_text().startswith("# 1 runs")
    (warning,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipping")]
    assert str(bad) in warning
    with pytest.raises(SystemExit):
        _compare_main([f"runs={bad}", f"out={tmp_path / 'out2'}"])
    assert "none of the 1 run(s) found is readable" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["model: [unclosed\n", "- a list\n- not a mapping\n"])
def test_an_invalid_hydra_config_falls_back_to_the_csv_hparams(text, short_runs, tmp_path, caplog):
    run = tmp_path / "run"
    shutil.copytree(short_runs["run_a"], run, ignore=shutil.ignore_patterns("checkpoints", "wandb"))
    (run / ".hydra").mkdir(exist_ok=True)
    (run / ".hydra" / "config.yaml").write_text(text)
    with caplog.at_level("WARNING"):
        config = read_run(run).config
    assert config.get("model.name") == read_config(short_runs["run_a"]).get("model.name") is not None
