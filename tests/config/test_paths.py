"""The paths group (conf/paths/default.yaml): one key moves every file the commands write."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from conftest import CONF, TINY_SYNTH, run_app, run_script


def test_every_app_composes_the_paths_group():
    apps = sorted(p.stem for p in CONF.glob("*.yaml"))
    assert len(apps) == 12
    for app in apps:
        text = (CONF / f"{app}.yaml").read_text()
        assert "  - paths: default\n" in text, app
        values = [line.split("#")[0] for line in text.splitlines() if not line.lstrip().startswith("#")]
        assert not [v for v in values if "outputs/" in v or v.rstrip().endswith(": outputs")], app


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_outputs_dir_moves_a_run_its_comparison_and_predictions(tmp_path, monkeypatch):
    out, cwd = tmp_path / "elsewhere", tmp_path / "cwd"
    cwd.mkdir()
    res = run_script("train.py", *TINY_SYNTH, "speed.threads=1", f"paths.outputs_dir={out}", cwd=cwd)
    assert res.returncode == 0, res.stderr[-2000:]
    (run,) = (out / "runs").glob("*/*")
    assert run.name.endswith("-no_st") and (run / "metrics.json").is_file() and (run / ".hydra").is_dir()
    assert not (cwd / "outputs").exists()

    monkeypatch.chdir(cwd)
    run_app("compare", [f"paths.outputs_dir={out}"])  # no runs=: every run under <outputs_dir>/runs
    assert run.name in (out / "compare" / "compare.md").read_text()

    Image.new("RGB", (20, 20), (200, 30, 30)).save(cwd / "sign.png")
    run_app("predict", [f"ckpt={run}", "input=sign.png", "device=cpu", "top_k=2", f"paths.outputs_dir={out}"])
    (csv,) = (out / "predictions").glob("*/predictions.csv")
    assert csv.read_text().startswith("name,index,class_1")
    assert not (cwd / "outputs").exists()


def test_resume_last_searches_the_configured_runs_dir(tmp_path):
    from stnlab.run_dirs import _resumed_from, resolve_resume, runs_dir_of

    ckpt = tmp_path / "runs" / "2026-01-01" / "10-00-00-no_st" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"")
    assert runs_dir_of({"paths": {"runs_dir": str(tmp_path / "runs")}}) == tmp_path / "runs"
    assert resolve_resume("last", runs_root=runs_dir_of({"paths": {"runs_dir": str(tmp_path / "runs")}}), verify=False)[
        1
    ] == Path(ckpt.parent.parent)
    assert _resumed_from(None, "last", str(tmp_path / "runs")) == ckpt.parent.parent
