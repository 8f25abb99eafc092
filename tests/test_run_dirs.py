"""Run folders (stnlab.run_dirs): runs started in the same second get their own folders; a folder holding another
run is refused and left alone."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from conftest import at_once, compose
from stnlab.errors import ConfigError
from stnlab.training.run import train
from tiny_runs import tiny_run, train_cli


def _claim(default: str) -> str:
    from stnlab.run_dirs import _run_dir_resolver

    return _run_dir_resolver(None, None, default)  # what hydra.run.dir resolves to in each process


@pytest.mark.timeout(60)
@pytest.mark.parametrize("processes", [2, 5])
def test_runs_started_in_the_same_second_get_their_own_folders(processes, tmp_path):
    default = str(tmp_path / "outputs" / "runs" / "2026-12-02" / "10-00-00-no_st")
    dirs = at_once(_claim, default, processes)
    assert dirs == {default} | {f"{default}-{k}" for k in range(2, processes + 1)}
    assert all(Path(d).is_dir() and not any(Path(d).iterdir()) for d in dirs)


@pytest.mark.e2e
def test_cli_run_lands_beside_a_run_started_in_the_same_second(gtsrb_mirror, data_root, tmp_path):
    """The default folder (<date>/<H-M-S>-<model>) is taken for the next 15 minutes (a loaded machine may take
    minutes to start Python): the run gets <...>-2."""
    now = time.time()
    taken = []
    for t in range(int(now), int(now) + 900):
        d = (
            tmp_path
            / "outputs"
            / "runs"
            / time.strftime("%Y-%m-%d", time.localtime(t))
            / f"{time.strftime('%H-%M-%S', time.localtime(t))}-no_st"
        )
        (d / "csv").mkdir(parents=True)
        taken.append(d)
    # It passes its checks, then fails in training: the folder it claimed holds its run.
    res = train_cli(
        "model=no_st",
        f"data.mirror={gtsrb_mirror}",
        f"data.root={data_root}",
        "data.image_size=32",
        "optim.lr=1e30",
        "trainer.max_epochs=3",
        "trainer.accelerator=cpu",
        cwd=tmp_path,
    )
    assert res.returncode == 2 and "training loss became" in res.stderr.strip().splitlines()[-1]
    assert all(sorted(p.name for p in d.iterdir()) == ["csv"] for d in taken)  # nothing written into them
    (mine,) = [d for d in (tmp_path / "outputs" / "runs").glob("*/*") if d not in taken]
    assert mine.name.endswith("-no_st-2") and (mine / ".hydra" / "config.yaml").is_file()


@pytest.mark.parametrize("marker", ["metrics.json", "checkpoints/last.ckpt", "csv/metrics.csv"])
def test_run_dir_of_another_run_is_refused_and_left_alone(marker, gtsrb_mirror, data_root, tmp_path):
    other = tmp_path / "other"
    (other / ".hydra").mkdir(parents=True)
    (other / ".hydra" / "config.yaml").write_text("model:\n  name: two_st\n")
    (other / marker).parent.mkdir(parents=True, exist_ok=True)
    (other / marker).write_text("theirs")
    before = sorted((p.relative_to(other), p.stat().st_mtime_ns) for p in other.rglob("*"))
    with pytest.raises(
        ConfigError,
        match=f"run_dir={other} already holds a run \\(model two_st\\); pick a new "
        f"run_dir, or continue that run with resume=last run_dir={other}",
    ):
        train(compose(tiny_run(gtsrb_mirror, data_root, other)))
    assert sorted((p.relative_to(other), p.stat().st_mtime_ns) for p in other.rglob("*")) == before
