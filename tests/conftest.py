from __future__ import annotations

import functools
import http.server
import multiprocessing
import os
import runpy
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SRC = ROOT / "src"
sys.path.insert(0, str(SRC))
sys.path.insert(0, str(Path(__file__).parent))

# pytest-xdist (make test) runs a worker per core: one intra-op thread each, set before torch is imported,
# rather than every worker contending for every core (two 1-thread processes beat one 2-thread one here).
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HYDRA_FULL_ERROR", "1")


def with_src(pythonpath: str | None = None) -> str:
    """``PYTHONPATH`` for a subprocess: this checkout's ``src/`` first (the apps import ``stnlab`` as installed by
    ``make install``; another checkout's editable install must not stand in for it), then ``pythonpath``."""
    return os.pathsep.join(p for p in (str(SRC), pythonpath) if p)


os.environ["PYTHONPATH"] = with_src(os.environ.get("PYTHONPATH"))

from gtsrb_fixture import make_archives  # noqa: E402


@pytest.fixture(scope="session")
def gtsrb_mirror(tmp_path_factory) -> Path:
    """A folder holding tiny official-layout archives (3 classes x 3 tracks x 4 frames, 12 test images)."""
    return make_archives(tmp_path_factory.mktemp("mirror"))


@pytest.fixture(scope="session")
def short_runs(gtsrb_mirror, tmp_path_factory) -> dict[str, Path]:
    """Two finished 4-epoch no_st runs on the tiny mirror, {"run_a": run_dir, "run_b": run_dir} (tests/short_runs.py)."""
    from short_runs import make_short_runs

    return make_short_runs(gtsrb_mirror, tmp_path_factory.mktemp("short_runs"))


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """A data root shared by the session's tiny runs (tests/tiny_runs.py): the cache is decoded once."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def reference(gtsrb_mirror, data_root, tmp_path_factory):
    """An uninterrupted 2-epoch tiny run (tests/tiny_runs.py), which the resumed and faulted runs must match:
    (metrics, run_dir)."""
    from stnlab.training.run import train
    from tiny_runs import tiny_run

    run = tmp_path_factory.mktemp("A") / "run"
    return train(compose(tiny_run(gtsrb_mirror, data_root, run))), run


@pytest.fixture(scope="session")
def http_mirror(gtsrb_mirror):
    """The same archives served over HTTP on 127.0.0.1."""
    handler = functools.partial(_QuietHandler, directory=str(gtsrb_mirror))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def real_mirror() -> Path | None:
    """The full GTSRB mirror, when one is set ($GTSRB_MIRROR) or lies beside the checkout."""
    for cand in (os.environ.get("GTSRB_MIRROR"), ROOT.parent / "shared" / "gtsrb"):
        if cand and (Path(cand) / "GTSRB_Final_Training_Images.zip").is_file():
            return Path(cand)
    return None


def compose(overrides: list[str]):
    """The run config that `python src/train.py <overrides>` would get."""
    from stnlab.config import compose_train

    return compose_train(overrides)


def run_app(name: str, argv: list[str]) -> None:
    """``python src/<name>.py <argv>`` in this process: a user error prints its line and raises SystemExit(2)."""
    script = str(ROOT / "src" / f"{name}.py")
    saved = sys.argv
    sys.argv = [script, *argv]
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        sys.argv = saved
        # Hydra keeps the job's config in a process-wide singleton; a later in-process train() would take it
        # (after --help, one without runtime.output_dir) for its own command line's.
        HydraConfig.instance().cfg = None


# The Moodstocks two-ST network shrunk to a few thousand parameters, for runs of a few seconds.
TINY_TWO_ST = [
    "model=two_st",
    "model.backbone.widths=[8,8,8]",
    "model.backbone.fc=16",
    "model.transformers.input.locnet.widths=[8,8,8]",
    "model.transformers.conv2.locnet.widths=[8,8,8]",
]


# A run of a second or two on a few synthetic images, no download.
TINY_SYNTH = [
    "data=synth",
    "data.num_train=64",
    "data.num_val=32",
    "data.num_test=0",
    "data.image_size=16",
    "model=no_st",
    "model.backbone.widths=[8,8,8]",
    "model.backbone.fc=16",
    "trainer.max_epochs=1",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "logger=csv",
]


def tiny_run_overrides(mirror: Path, root: Path, run_dir: Path) -> list[str]:
    """Overrides for a fast run on the tiny mirror ``mirror``: data decoded under ``root``, the run in ``run_dir``."""
    return [
        f"data.mirror={mirror}",
        f"data.root={root}",
        f"run_dir={run_dir}",
        "data.image_size=32",
        "data.batch_size=8",
        "data.eval_batch_size=16",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "trainer.accelerator=cpu",
        "trainer.log_every_n_steps=1",
    ]


@pytest.fixture
def tiny_overrides(gtsrb_mirror, tmp_path):
    """Overrides for a fast run on the tiny mirror, with its own data and run folders."""
    return tiny_run_overrides(gtsrb_mirror, tmp_path / "data", tmp_path / "run")


def run_script(script: str, *args: str, cwd: Path, env: dict | None = None, timeout: float = 300):
    """``python src/<script> <args>`` in a fresh interpreter, as a user runs it (Hydra's own error display,
    not HYDRA_FULL_ERROR); ``env`` is added to this process's environment."""
    full = dict(os.environ, **(env or {}))
    full["PYTHONPATH"] = with_src(full.get("PYTHONPATH"))
    full.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, str(ROOT / "src" / script), *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --- sweeps ---------------------------------------------------------------------------------------------

# Small network, 16 px; no per-trial test report (confusion plots): seconds per trial.
FAST = ["model=no_st", "data.image_size=16", "++callbacks.test_report=null"]


@pytest.fixture
def one_torch_thread():
    """Tiny batches on a shared 2-core machine: one intra-op thread is ~10x faster than two contending."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def sweep_args(tiny_overrides, tmp_path):
    """Sweep options + training overrides for the tiny mirror (trials write under tmp_path/sweeps)."""
    train = [o for o in tiny_overrides if not o.startswith("run_dir=")]
    return [f"out_dir={tmp_path / 'sweeps'}", *train]


def write_spec(tmp_path: Path, name: str, **fields) -> Path:
    from omegaconf import OmegaConf

    path = tmp_path / f"{name}.yaml"
    OmegaConf.save(OmegaConf.create({"study": name, **fields}), path)
    return path


def load_study(tmp_path: Path, name: str):
    import optuna

    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'sweeps' / 'optuna.db'}")


def _released_together(fn, arg, barrier, results) -> None:
    barrier.wait()
    results.put(fn(arg))


def at_once(fn, arg, processes: int) -> set:
    """``fn(arg)`` in ``processes`` forked processes released at the same instant (``fn`` at module level); the set
    of what they returned."""
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    procs = [ctx.Process(target=_released_together, args=(fn, arg, barrier, results)) for _ in range(processes)]
    for p in procs:
        p.start()
    out = {results.get(timeout=30) for _ in procs}
    for p in procs:
        p.join(10)
    return out
