"""Checkpoints are data: every app unpickles them with ``weights_only=True``, so a crafted file runs nothing, and a
checkpoint whose config does not fit its weights is one line."""

from __future__ import annotations

import builtins
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, TINY_TWO_ST, run_app
from query_checkpoint import save_checkpoint, untrained
from stnlab.training.checkpoints import CheckpointError, load_module
from tiny_runs import tiny_run


class Payload:
    """Unpickled without ``weights_only``, this opens (so creates) ``marker``: any code could run there instead."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


def _crafted(tmp_path: Path) -> tuple[Path, Path]:
    """A file shaped like an stnlab checkpoint, carrying the payload: (the file, the marker it would create)."""
    marker = tmp_path / "payload-ran"
    path = tmp_path / "crafted.ckpt"
    module = untrained(TINY_TWO_ST)
    torch.save(
        {"state_dict": module.state_dict(), "hyper_parameters": {"cfg": module.cfg}, "epoch": 0, "x": Payload(marker)},
        path,
    )
    return path, marker


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("app", ["evaluate", "export", "predict", "serve", "visualize", "robustness", "train"])
def test_a_crafted_checkpoint_runs_nothing_in_any_app(app, tmp_path, capsys, tiny_overrides):
    path, marker = _crafted(tmp_path)
    (tmp_path / "sign.ppm").write_bytes(b"P6\n8 8\n255\n" + bytes(192))
    argv = {
        "predict": [f"ckpt={path}", f"input={tmp_path / 'sign.ppm'}"],
        "serve": [f"ckpt={path}", f"port={_free_port()}", "device=cpu"],
        "robustness": [f"ckpt=[{path}]"],
        "train": [*tiny_overrides, "model=two_st", f"resume={path}"],
    }.get(app, [f"ckpt={path}"])
    with pytest.raises(SystemExit) as exit_info:
        run_app(app, argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert not marker.exists()
    assert len(err.splitlines()) == 1 and err.startswith("stnlab: error:"), err
    assert f"{path}" in err and "it would build Python objects (io.open), which could run code" in err


def test_a_checkpoint_whose_config_does_not_fit_its_weights_is_one_line(tmp_path):
    module = untrained(TINY_TWO_ST)
    cfg = {**module.cfg, "model": {**module.cfg["model"], "backbone": {**module.cfg["model"]["backbone"], "fc": 32}}}
    path = tmp_path / "edited.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": {"cfg": cfg}}, path)
    with pytest.raises(CheckpointError, match=r"its run config does not fit its weights \(size mismatch for net\."):
        load_module(path)
    assert load_module(save_checkpoint(module, tmp_path / "intact.ckpt")) is not None


def test_a_checkpoint_config_naming_a_function_runs_nothing(tmp_path):
    """weights_only keeps the pickle from running code, but the run config is instantiated to rebuild the module:
    a _target_ there must name one of stnlab's or torch.optim's classes, never a function like open or os.system."""
    marker = tmp_path / "payload-ran"
    module = untrained(TINY_TWO_ST)
    cfg = {**module.cfg, "normalize": {"_target_": "builtins.open", "_args_": [str(marker), "w"]}}
    path = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": {"cfg": cfg}}, path)
    with pytest.raises(CheckpointError, match=r"names cfg.normalize._target_=builtins.open, not a class of stnlab"):
        load_module(path)
    assert not marker.exists()


@pytest.mark.parametrize("where", ["given", "chosen"])
def test_a_checkpoint_that_is_not_a_regular_file_is_one_line_never_a_hang(where, tmp_path):
    """A FIFO named as ckpt= or found as a run folder's last.ckpt: opening it would block until a writer comes."""
    import os

    from stnlab.training.checkpoints import resolve_checkpoint

    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    fifo = tmp_path / "run" / "checkpoints" / "last.ckpt"
    os.mkfifo(fifo)
    with pytest.raises(CheckpointError, match=f"checkpoint {fifo} is not a regular file; pass ckpt="):
        load_module(fifo if where == "given" else tmp_path / "run")
    with pytest.raises(CheckpointError, match="is not a regular file"):
        resolve_checkpoint(tmp_path / "run")


def _small_disk(limit: int):
    def limit_file_size():
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    return limit_file_size


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_full_disk_under_run_dir_is_one_line_and_leaves_no_truncated_checkpoint(
    reference, gtsrb_mirror, data_root, tmp_path
):
    """Checkpoints of this network are ~48 kB; every other file of the run is smaller than 20 kB."""
    run = tmp_path / "run"
    env = dict(os.environ, WANDB_MODE="disabled")
    env.pop("HYDRA_FULL_ERROR", None)
    res = subprocess.run(
        [sys.executable, str(ROOT / "src" / "train.py"), *tiny_run(gtsrb_mirror, data_root, run)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        preexec_fn=_small_disk(20_000),
    )
    assert res.returncode == 2, res.stderr[-3000:]
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith(f"stnlab: error: cannot write {run}/checkpoints/") and "File too large" in last
    assert f"then continue with resume=last run_dir={run}" in last and "Traceback" not in res.stderr
    assert not list(run.rglob("*.part")) and not (run / "metrics.json").exists()
    assert not list((run / "checkpoints").glob("*.ckpt"))  # none truncated under a final name (was a cut last.ckpt)
