"""An ST learns to undo distortions it is never told about; its localisation net trains at its own rate."""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from conftest import compose
from stnlab.data.synth import SynthDataModule, alignment_error
from stnlab.models.transforms import base_grid
from stnlab.training.module import STNModule, build_module


def module_for(overrides: list[str]) -> STNModule:
    return build_module(OmegaConf.to_container(compose(overrides), resolve=True))


def test_locnet_parameters_get_lr_times_locnet_lr_scale():
    module = module_for(
        ["model=two_st", "data.image_size=32", "optim=adam", "optim.lr=0.002", "module.locnet_lr_scale=0.1"]
    )
    optimizer = module.configure_optimizers()
    lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    st_ids = {id(p) for p in module.net.transformers.parameters()}
    assert set(lr_of) == {id(p) for p in module.net.parameters()}  # every parameter, once
    assert [lr_of[i] for i in st_ids] == pytest.approx([0.002 * 0.1] * len(st_ids))
    others = [lr for i, lr in lr_of.items() if i not in st_ids]
    assert others == pytest.approx([0.002] * len(others))


SIZE, CLASSES = 24, 10


def synth(translation: float, n: int, seed: int) -> SynthDataModule:
    dm = SynthDataModule(
        num_train=n,
        num_val=200,
        num_test=0,
        image_size=SIZE,
        rotation=0.0,
        scale=(1.0, 1.0),
        translation=translation,
        perspective=0.0,
        clutter=0.0,
        sign_extent=0.45,
        num_classes=CLASSES,
        batch_size=32,
        seed=seed,
    )
    dm.setup()
    return dm


def fit(module: STNModule, dm: SynthDataModule) -> None:
    optimizer = module.configure_optimizers()
    for images, labels in dm.train_dataloader():
        loss = F.cross_entropy(module.net(module.preprocess(images)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


@torch.no_grad()
def alignment(module: STNModule, split) -> float:
    """Mean distance (normalised units) between the ST output's points and the canonical sign's."""
    module.eval()
    records: dict = {}
    module.net(module.preprocess(split.images), st_outputs=records)
    module.train()
    _, params, _ = records["input"]
    pts = base_grid(len(split), 8, 8).reshape(len(split), -1, 2)
    st_points = module.net.transformers["input"].transform.map_points(params, pts)
    return alignment_error(split.warps, st_points, pts).mean().item()


@pytest.mark.e2e
def test_st_learns_to_undo_translations(one_torch_thread):
    """A classifier first learns the signs in canonical pose (the ST stays the identity), then the
    signs are shifted by up to 12% of the image per axis and only the ST may adapt: the loss can fall
    only by moving the signs back. The ST is never told the shifts (``warps`` serve only to measure)."""
    start = time.perf_counter()
    torch.manual_seed(0)
    canonical, shifted = synth(0.0, 80 * 32, seed=1), synth(0.12, 300 * 32, seed=0)
    module = module_for(
        [
            "data=synth",
            f"data.image_size={SIZE}",
            "model=fc_st",
            "transform=translation",
            "model.transformers.input.locnet.widths=[64]",
            "model.backbone.widths=[8]",
            "model.backbone.kernels=[5]",
            "model.backbone.fc=32",
            "optim=adam",
            "optim.lr=0.001",
            "normalize.local_norm=false",
        ]
    )
    module.normalizer.set_stats(shifted.mean.float(), shifted.std.float())
    fit(module, canonical)
    before = alignment(module, shifted.val)
    for p in module.net.backbone.parameters():
        p.requires_grad_(False)
    fit(module, shifted)
    after = alignment(module, shifted.val)
    seconds = time.perf_counter() - start
    assert after <= 0.5 * before, (
        f"alignment error {before:.3f} -> {after:.3f} (x{before / after:.2f}); the ST should at least halve it"
    )
    print(f"alignment error {before:.3f} -> {after:.3f} (x{before / after:.2f}) in {seconds:.0f} s")
