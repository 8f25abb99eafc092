"""The synthetic traffic-sign-like data: shapes, determinism, ground-truth distortions, config."""

from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import compose
from stnlab.data.synth import (
    CLASSES,
    NUM_CLASSES,
    SynthDataModule,
    SynthSplit,
    alignment_error,
    random_warps,
    render,
    templates,
)
from stnlab.errors import ConfigError
from stnlab.geometry import apply_homography, base_grid


def small(**kw) -> SynthDataModule:
    args = dict(num_train=86, num_val=43, num_test=20, image_size=24, seed=3) | kw
    dm = SynthDataModule(**args)
    dm.setup()
    return dm


def test_classes_are_43_distinct_pictograms():
    assert len(set(CLASSES)) == NUM_CLASSES == 43
    t = templates(32)
    assert t.shape == (43, 4, 32, 32) and 0 <= t.min() and t.max() <= 1
    diff = (t[:, None] - t[None]).abs().flatten(2).mean(-1)  # (43, 43) mean absolute difference
    off_diagonal = diff + torch.eye(43) * 1e9
    assert off_diagonal.min() > 0.01, "two classes draw (almost) the same pictogram"


def test_splits_have_the_documented_shapes_and_balanced_labels():
    dm = small()
    assert isinstance(dm.train, SynthSplit) and dm.has_test
    for split, n in ((dm.train, 86), (dm.val, 43), (dm.test, 20)):
        assert split.images.shape == (n, 3, 24, 24) and split.images.dtype == torch.uint8
        assert split.labels.dtype == torch.int64 and split.warps.shape == (n, 3, 3)
    assert torch.bincount(dm.train.labels, minlength=43).tolist() == [2] * 43
    assert dm.mean.shape == (3,) and (dm.std > 0.1).all()  # varied images, not a constant
    sub = dm.train.subset(torch.tensor([5, 1]))
    assert isinstance(sub, SynthSplit) and torch.equal(sub.warps, dm.train.warps[[5, 1]])


def test_same_seed_same_data_other_seed_other_data():
    a, b, c = small(), small(), small(seed=4)
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.val.warps, b.val.warps)
    assert not torch.equal(a.train.images, c.train.images)
    # Each split has its own stream: the validation set does not change with the training size.
    assert torch.equal(small(num_train=50).val.images, a.val.images)


def test_num_classes_restricts_labels():
    assert small(num_classes=5).train.labels.max() == 4


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(scale=(1.2, 0.8)), "data.scale"),
        (dict(clutter=2.0), "data.clutter"),
        (dict(num_classes=50), "data.num_classes"),
        (dict(image_size=4), "data.image_size"),
    ],
)
def test_bad_settings_are_one_clear_error(kw, match):
    with pytest.raises(ConfigError, match=match):
        SynthDataModule(**kw)


def _sign_centroid(images: torch.Tensor) -> torch.Tensor:
    """Normalised (x, y) centroid of the pixels that differ from the (flat) background."""
    x = images.float()
    mask = ((x - x[:, :, :1, :1]).abs().sum(1) > 30).float()  # (N, H, W)
    n, h, w = mask.shape
    grid = base_grid(1, h, w)[0]  # (H, W, 2)
    return torch.einsum("nhw,hwc->nc", mask, grid) / mask.sum((1, 2))[:, None]


def test_warps_are_the_ground_truth_of_the_sign_position():
    gen = torch.Generator().manual_seed(0)
    warps = random_warps(64, gen, rotation=0, scale=(1, 1), translation=0.15, perspective=0)
    images = render(torch.arange(64) % 43, warps, 48, gen, clutter=0.0, noise=0.0)
    # The canonical centre (0, 0) lies where the inverse warp sends it: the sign's centre in the image.
    centre = torch.linalg.inv(warps)[:, :2, 2]
    assert centre.abs().max() > 0.2  # the signs really moved
    torch.testing.assert_close(_sign_centroid(images), centre, atol=0.04, rtol=0)


def test_undoing_the_warp_restores_the_canonical_pose():
    gen = torch.Generator().manual_seed(1)
    labels = torch.arange(43)
    warps = random_warps(43, gen, rotation=40, scale=(0.8, 1.2), translation=0.1, perspective=0.1)
    distorted = render(labels, warps, 32, gen, clutter=0.0, noise=0.0).float()
    canonical = render(labels, torch.eye(3).expand(43, 3, 3), 32, gen, clutter=0.0, noise=0.0).float()
    pts = base_grid(43, 32, 32).reshape(43, -1, 2)

    def sample(points):
        grid = points.reshape(43, 32, 32, 2)
        return torch.nn.functional.grid_sample(distorted, grid, align_corners=False)

    def corr(a, b):  # per-image correlation inside the canonical sign (brightness differs per image)
        a, b = a.flatten(1), b.flatten(1)
        a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
        return ((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).mean().item()

    undo = apply_homography(torch.linalg.inv(warps), pts)  # T = the inverse of the image -> canonical map
    assert alignment_error(warps, undo, pts).max() < 1e-4
    wrong = apply_homography(warps, pts)  # the distortion applied twice
    inner = (pts.norm(dim=-1) < 0.5).reshape(43, 1, 32, 32).float()  # inside every sign
    good, bad = corr(sample(undo) * inner, canonical * inner), corr(sample(wrong) * inner, canonical * inner)
    assert good > 0.9 and good > bad + 0.2, f"correlation with the canonical sign: undo {good:.2f}, redo {bad:.2f}"


def test_alignment_error_of_the_identity_is_the_distortion():
    shift = torch.eye(3).repeat(2, 1, 1)
    shift[:, 0, 2] = torch.tensor([0.2, -0.1])  # image -> canonical: x + tx
    pts = base_grid(2, 4, 4).reshape(2, -1, 2)
    torch.testing.assert_close(alignment_error(shift, pts, pts), torch.tensor([0.2, 0.1]))


def test_rotation_range_is_respected():
    warps = random_warps(500, torch.Generator().manual_seed(0), rotation=10, scale=(1, 1), translation=0)
    angles = torch.atan2(warps[:, 1, 0], warps[:, 0, 0]).abs()
    assert math.radians(8) < angles.max() <= math.radians(10) + 1e-6


def test_data_synth_composes_with_the_app_config():
    cfg = compose(["data=synth", "data.num_train=10", "data.num_val=5", "data.num_test=0"])
    assert cfg.model.image_size == 32 and cfg.data.name == "synth"
    dm = instantiate(OmegaConf.to_container(cfg.data, resolve=True))
    dm.setup()
    assert len(dm.train_dataloader().dataset) == 10 and not dm.has_test
    images, labels = next(iter(dm.val_dataloader()))
    assert images.shape == (5, 3, 32, 32) and images.dtype == torch.uint8
