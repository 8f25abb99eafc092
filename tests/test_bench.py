"""src/bench.py: the quick mode prints the table, without hydra/omegaconf/wandb (as on the GPU machines)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from stnlab.bench import main
from stnlab.bench.config import model_presets, run_config
from stnlab.bench.measure import OpCounter
from stnlab.errors import ConfigError

# Runs src/bench.py with hydra, omegaconf and wandb unimportable.
WITHOUT_HYDRA = """
import importlib.abc, runpy, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("hydra", "omegaconf", "wandb"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
sys.meta_path.insert(0, Block())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.parametrize("preset", model_presets())
def test_yaml_config_builds_what_hydra_builds(preset):
    overrides = [f"model={preset}", "data.image_size=32", "data.batch_size=8"]
    hydra_cfg, yaml_cfg = run_config(overrides, use_hydra=True), run_config(overrides, use_hydra=False)
    for section in ("model", "transform", "normalize", "optim", "scheduler", "augment", "loss", "speed", "seed"):
        assert yaml_cfg.get(section) == hydra_cfg.get(section), section
    assert yaml_cfg["data"]["batch_size"] == 8


def test_quick_bench_prints_the_table_without_hydra(tmp_path):
    out = tmp_path / "bench"
    res = subprocess.run(
        [sys.executable, "-c", WITHOUT_HYDRA, str(ROOT / "src" / "bench.py"), "--quick", "--models", "no_st",
         "--epoch", "--epoch-model", "no_st", "--epochs", "1", "--epoch-variants", "base", "nchw", "--out", str(out)],
        cwd=tmp_path, env=dict(os.environ, PYTHONPATH=""), capture_output=True, text=True, timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    (report,) = out.glob("*.md")
    text = report.read_text()
    assert text in res.stdout  # printed as written
    assert "random uint8 images of the GTSRB shape" in text
    rows = [line.split("|")[1:-1] for line in text.splitlines() if line.startswith("| no_st")]
    assert len(rows) == 3  # one throughput row, two epoch rows
    model_row = dict(zip([h.strip() for h in text.split("## Training")[1].splitlines()[2].split("|")[1:-1]],
                         [c.strip() for c in rows[0]]))
    assert model_row["px"] == "32" and float(model_row["Lightning / plain"]) > 0
    assert float(model_row["train img/s Lightning"]) > 0 and float(model_row["infer img/s"]) > 0
    assert 0 <= float(model_row["data wait Lightning"].rstrip("%")) <= 100
    # Lightning's step is the plain step plus its metrics and logging, never fewer ops.
    assert int(model_row["ops/step Lightning"]) >= int(model_row["ops/step plain"]) > 10
    assert [r[4].strip() for r in rows[1:]] == ["as configured", "speed.channels_last=false"]
    assert all(r[3].strip() == "16" for r in rows[1:])  # images per quick epoch


def test_op_counter_counts_forward_and_backward_ops():
    x = torch.ones(3, requires_grad=True)
    with OpCounter() as counter:
        (x * 2).sum().backward()
    # mul and sum forward; sum's backward expands, mul's backward multiplies, the grad is accumulated.
    assert counter.ops >= 4
    with OpCounter() as none:
        pass
    assert none.ops == 0


def test_unknown_preset_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown model preset.*four_st.*two_st"):
        main(["--quick", "--models", "four_st", "--out", str(tmp_path)])
