"""Cheap checkpoints for the query-time tests: untrained networks whose STs are nudged off the identity."""

from __future__ import annotations

from pathlib import Path

import lightning
import torch
from omegaconf import OmegaConf

from conftest import compose
from stnlab.training import build_module


def untrained(overrides: list[str], seed: int = 0, image_size: int = 32, st_noise: float = 0.05):
    """The module ``train.py <overrides>`` would start from, its ST regressors' weights set to small noise
    (an untrained ST is exactly the identity) and non-trivial input statistics."""
    cfg = OmegaConf.to_container(compose(["data=synth", f"data.image_size={image_size}", *overrides]), resolve=True)
    torch.manual_seed(seed)
    module = build_module(cfg).eval()
    with torch.no_grad():
        for st in module.net.transformers.values():
            st.regressor.weight.normal_(0, st_noise)
        module.normalizer.set_stats(torch.tensor([0.4, 0.35, 0.3]), torch.tensor([0.25, 0.2, 0.22]))
    return module


def save_checkpoint(module, path: Path) -> Path:
    """``module`` in the layout ``STNModule.load_from_checkpoint`` (and so ``load_module``) reads."""
    torch.save(
        {
            "state_dict": module.state_dict(),
            "hyper_parameters": {"cfg": module.cfg},
            "pytorch-lightning_version": lightning.__version__,
        },
        path,
    )
    return path
