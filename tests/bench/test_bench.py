"""src/bench.py: the quick mode prints the table, without wandb (as on the GPU machines, with Hydra's wheels)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, with_src
from stnlab.apps.bench import run
from stnlab.bench.measure import OpCounter
from stnlab.config import compose
from stnlab.errors import ConfigError

# Runs src/bench.py with wandb unimportable (the GPU machines have none).
WITHOUT_WANDB = """
import importlib.abc, runpy, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "wandb":
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
sys.meta_path.insert(0, Block())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.e2e
def test_quick_bench_prints_the_table_without_wandb(tmp_path):
    out = tmp_path / "bench"
    res = subprocess.run(
        [
            sys.executable,
            "-c",
            WITHOUT_WANDB,
            str(ROOT / "src" / "bench.py"),
            "quick=true",
            "models=[no_st]",
            "epoch=true",
            "epoch_model=no_st",
            "epochs=1",
            "epoch_variants=[base,nchw]",
            "inference.models=[compact_no_st]",
            f"out={out}",
        ],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=with_src()),  # as `make bench-gpu` runs it: src/ on the path
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench"]  # no Hydra output folder
    (report,) = out.glob("*.md")
    text = report.read_text()
    assert text in res.stdout  # printed as written
    assert "random uint8 images of the GTSRB shape" in text
    rows = [line.split("|")[1:-1] for line in text.splitlines() if line.startswith("| no_st")]
    assert len(rows) == 3  # one throughput row, two epoch rows
    model_row = dict(
        zip(
            [h.strip() for h in text.split("## Training")[1].splitlines()[2].split("|")[1:-1]],
            [c.strip() for c in rows[0]],
        )
    )
    assert model_row["px"] == "32" and float(model_row["Lightning / plain"]) > 0
    assert float(model_row["train img/s Lightning"]) > 0 and float(model_row["infer img/s"]) > 0
    assert 0 <= float(model_row["data wait Lightning"].rstrip("%")) <= 100
    # Lightning's step is the plain step plus its metrics and logging, never fewer ops.
    assert int(model_row["ops/step Lightning"]) >= int(model_row["ops/step plain"]) > 10
    assert [r[4].strip() for r in rows[1:]] == ["as configured", "speed.channels_last=false"]
    assert all(r[3].strip() == "16" for r in rows[1:])  # images per quick epoch
    # Inference on the CPU: PyTorch eager and onnxruntime, each a latency and a throughput.
    engines = {
        r[1].strip(): r
        for r in (line.split("|")[1:-1] for line in text.splitlines())
        if r and r[0].strip() == "compact_no_st (32 px)"
    }
    assert sorted(engines) == ["onnxruntime", "pytorch"]
    assert all(float(r[2]) > 0 and float(r[3]) > 0 for r in engines.values())


def test_op_counter_counts_forward_and_backward_ops():
    x = torch.ones(3, requires_grad=True)
    with OpCounter() as counter:
        (x * 2).sum().backward()
    # mul and sum forward; sum's backward expands, mul's backward multiplies, the grad is accumulated.
    assert counter.ops >= 4
    with OpCounter() as none:
        pass
    assert none.ops == 0


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["models=[four_st]"], "unknown model preset.*four_st.*two_st"),
        (["epoch_variants=[base,turbo]"], "epoch_variants=turbo must be one of base, compile"),
        (["image_size=[32,0]"], "image_size=\\[32,0\\]: expected a list of positive integers"),
        (["device=tpu"], "device=tpu is not a device"),
        (["data.source=imagenet"], "data.source=imagenet must be one of random, gtsrb"),
        (["speed.channels_last=maybe"], "speed.channels_last=maybe must be true, false or auto"),
    ],
)
def test_bad_settings_are_config_errors_before_any_work(overrides, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        run(compose("bench", ["quick=true", f"out={tmp_path / 'out'}", *overrides]))
    assert not (tmp_path / "out").exists()
