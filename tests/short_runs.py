"""Two finished short training runs on the tiny GTSRB archives, shared by the evaluation tests.

``run_a``: no_st, lr 0.01, seed 1 (config read back from ``csv/hparams.yaml``).
``run_b``: no_st, lr 0.005, momentum 0.9, seed 2, with the ``.hydra/config.yaml`` that a
``train.py`` run gets. Both log offline to W&B and run the test-stage report callback.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from omegaconf import OmegaConf

RUNS = {
    "run_a": ["seed=1", "optim=adam", "optim.lr=0.003"],
    "run_b": ["seed=2", "optim.lr=0.02", "optim.momentum=0.9"],
}


@contextlib.contextmanager
def single_thread():
    """Tiny networks run several times faster on one thread than on oversubscribed shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def make_short_runs(mirror: Path, root: Path) -> dict[str, Path]:
    with single_thread():
        return {name: _run(mirror, root, name, extra) for name, extra in RUNS.items()}


def _run(mirror: Path, root: Path, name: str, extra: list[str]) -> Path:
    from conftest import compose, tiny_run_overrides
    from stnlab.training.run import train

    run_dir = root / name
    cfg = compose(
        [
            *tiny_run_overrides(mirror, root / "data", run_dir),
            "model=no_st",
            "model.backbone.widths=[16,32,48]",
            "model.backbone.fc=64",
            "trainer.max_epochs=4",
            *extra,
        ]
    )
    if name == "run_b":
        (run_dir / ".hydra").mkdir(parents=True)
        OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")  # as Hydra writes it: unresolved
    train(cfg)
    return run_dir
