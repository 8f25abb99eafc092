"""Transform families: identity, hand-computed warps, restrictions, gradients, configs and presets."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import CONF, TINY_TWO_ST, compose
from stnlab.errors import ConfigError
from stnlab.geometry import ALIGN_CORNERS, apply_homography, base_grid
from stnlab.models.spatial_transformer import SpatialTransformer
from stnlab.models.transforms import Affine, Projective, RotationScaleTranslation, ThinPlateSpline
from stnlab.training.module import build_network
from stnlab.training.run import train

TRANSFORM_FILES = sorted(p.stem for p in (CONF / "transform").glob("*.yaml"))
SUBSETS = [
    "rotation",
    "scale",
    "translation",
    "rotation_scale",
    "rotation_translation",
    "scale_translation",
    "rotation_scale_translation",
]


def load(name: str):
    return instantiate(OmegaConf.load(CONF / "transform" / f"{name}.yaml"))


def warp(transform, params: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    grid = transform.grid(params, images.shape)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=ALIGN_CORNERS)


def test_every_family_and_subset_has_a_config():
    assert set(SUBSETS + ["affine", "projective", "tps"]) <= set(TRANSFORM_FILES)


@pytest.mark.parametrize("name", TRANSFORM_FILES)
def test_identity_parameters_give_the_identity_grid(name):
    t = load(name)
    assert t.name == name  # run names and tags use it
    ident = t.identity()
    assert ident.shape == (t.num_params,)
    grid = t.grid(ident.expand(2, -1), (2, 3, 5, 7))
    torch.testing.assert_close(grid, base_grid(2, 5, 7), atol=1e-5, rtol=0)


class TinyLocNet(torch.nn.Sequential):
    def __init__(self, in_channels: int, in_size: int):
        super().__init__(torch.nn.Flatten(), torch.nn.Linear(in_channels * in_size**2, 4), torch.nn.ReLU())
        self.out_features = 4


@pytest.mark.parametrize("name", TRANSFORM_FILES)
def test_spatial_transformer_is_the_identity_at_initialisation(name):
    st = SpatialTransformer(3, 12, TinyLocNet, load(name))
    x = torch.rand(4, 3, 12, 12)
    torch.testing.assert_close(st.params(x), st.transform.identity().expand(4, -1))
    torch.testing.assert_close(st(x), x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", TRANSFORM_FILES)
def test_gradients_are_finite_and_reach_every_parameter(name):
    t = load(name)
    torch.manual_seed(0)
    params = (t.identity() + 0.05 * torch.randn(3, t.num_params)).requires_grad_()
    images = torch.rand(3, 3, 10, 10)
    warp(t, params, images).square().sum().backward()
    assert torch.isfinite(params.grad).all()
    assert (params.grad.abs().sum(0) > 0).all(), f"{name}: some parameters get no gradient: {params.grad}"


# --- hand-computed warps ---------------------------------------------------------------------------------------


def test_rotation_by_a_quarter_turn_is_rot90():
    img = torch.arange(25.0).view(1, 1, 5, 5)
    out = warp(load("rotation"), torch.tensor([[math.pi / 2]]), img)
    # Output (x, y) samples input (-y, x): out[i, j] = in[j, W-1-i], numpy/torch rot90 with k=1.
    torch.testing.assert_close(out, torch.rot90(img, 1, dims=(2, 3)), atol=1e-4, rtol=0)


def test_translation_by_one_pixel_shifts_left():
    img = torch.arange(16.0).view(1, 1, 4, 4) + 1
    out = warp(load("translation"), torch.tensor([[2 / 4, 0.0]]), img)  # one pixel = 2 / W normalised units
    expected = torch.cat([img[..., 1:], torch.zeros(1, 1, 4, 1)], dim=3)  # output x samples input x + 1 pixel
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_scale_one_half_zooms_in_on_the_centre():
    ramp = torch.arange(4.0).expand(1, 1, 4, 4)  # in[:, j] = j, linear in x
    out = warp(load("scale"), torch.tensor([[0.5]]), ramp)
    # Output centres x = (-0.75, -0.25, 0.25, 0.75) sample input x / 2 -> pixel positions (x/2 + 1) * 2 - 0.5.
    torch.testing.assert_close(out[0, 0, 0], torch.tensor([0.75, 1.25, 1.75, 2.25]))


def test_rotation_scale_translation_matrix_is_the_documented_composition():
    a, s, tx, ty = 0.3, 1.2, -0.1, 0.25
    theta = RotationScaleTranslation().matrix(torch.tensor([[a, s, tx, ty]]))[0]
    expected = torch.tensor([[s * math.cos(a), -s * math.sin(a), tx], [s * math.sin(a), s * math.cos(a), ty]])
    torch.testing.assert_close(theta, expected)
    aniso = RotationScaleTranslation(anisotropic=True)
    assert aniso.num_params == 5 and aniso.identity().tolist() == [0.0, 1.0, 1.0, 0.0, 0.0]
    theta = aniso.matrix(torch.tensor([[0.0, 0.5, 2.0, 0.0, 0.0]]))[0]
    torch.testing.assert_close(theta, torch.tensor([[0.5, 0.0, 0.0], [0.0, 2.0, 0.0]]))


def test_affine_points_match_affine_grid():
    t, params = Affine(), torch.randn(2, 6)
    pts = base_grid(2, 4, 6).reshape(2, -1, 2)
    torch.testing.assert_close(t.map_points(params, pts).reshape(2, 4, 6, 2), t.grid(params, (2, 1, 4, 6)))


@pytest.mark.parametrize("h, w", [(32, 32), (5, 7), (1, 3)])
def test_grids_equal_torch_affine_grid(h, w):
    # base_grid and Affine.grid are built in closed form (compilable); they must stay F.affine_grid's.
    theta = torch.randn(3, 2, 3)
    expected = F.affine_grid(theta, [3, 1, h, w], align_corners=ALIGN_CORNERS)
    torch.testing.assert_close(Affine().grid(theta.view(3, 6), (3, 1, h, w)), expected, atol=1e-6, rtol=0)
    identity = F.affine_grid(torch.eye(2, 3).expand(3, 2, 3), [3, 1, h, w], align_corners=ALIGN_CORNERS)
    torch.testing.assert_close(base_grid(3, h, w), identity, atol=1e-6, rtol=0)


# --- restricted transforms cannot express what they exclude ---------------------------------------------------


@pytest.mark.parametrize("name", SUBSETS)
def test_restricted_transforms_cannot_express_excluded_motions(name):
    t = load(name)
    torch.manual_seed(1)
    theta = t.matrix(t.identity() + torch.randn(64, t.num_params))  # large, arbitrary parameters
    lin, shift = theta[:, :, :2], theta[:, :, 2]
    gram = lin.transpose(1, 2) @ lin  # = diag(sx^2, sy^2) for any rotation
    if "translation" not in name:
        assert shift.abs().max() == 0, f"{name} translates"
    else:
        assert shift.abs().min() > 0
    if "scale" not in name:
        torch.testing.assert_close(gram, torch.eye(2).expand(64, 2, 2), msg=f"{name} scales")
    else:
        assert not torch.allclose(gram, torch.eye(2).expand(64, 2, 2), atol=1e-3)
        torch.testing.assert_close(gram[:, 0, 0], gram[:, 1, 1], msg=f"{name} scales anisotropically")
    if "rotation" not in name:
        assert lin[:, 0, 1].abs().max() == 0 and lin[:, 1, 0].abs().max() == 0, f"{name} rotates or shears"
    else:
        assert lin[:, 1, 0].abs().min() > 0
    # Never a shear: the columns stay orthogonal.
    torch.testing.assert_close(gram[:, 0, 1], torch.zeros(64), atol=1e-4, rtol=0)


def test_configs_naming_the_former_similarity_still_build():
    old = instantiate(
        {"_target_": "stnlab.models.transforms.Similarity", "name": "rotation", "scale": False, "translation": False}
    )
    assert isinstance(old, RotationScaleTranslation) and old.name == "rotation" and old.num_params == 1


def test_rotation_scale_translation_needs_one_part():
    with pytest.raises(ConfigError, match="enable at least one"):
        RotationScaleTranslation(rotation=False, scale=False, translation=False)


# --- projective ----------------------------------------------------------------------------------------------


def test_projective_with_zero_perspective_is_the_affine():
    params6 = torch.randn(3, 6)
    pts = base_grid(3, 5, 5).reshape(3, -1, 2)
    proj = torch.cat([params6, torch.zeros(3, 2)], dim=1)
    torch.testing.assert_close(Projective().map_points(proj, pts), Affine().map_points(params6, pts))


def test_projective_divides_by_the_homogeneous_coordinate():
    params = torch.tensor([[1.0, 0, 0, 0, 1, 0, 0.5, 0.0]])  # w = 0.5 x + 1
    pts = torch.tensor([[[1.0, 1.0], [-1.0, 0.5], [0.0, 0.0]]])
    expected = torch.tensor([[[1 / 1.5, 1 / 1.5], [-1 / 0.5, 0.5 / 0.5], [0.0, 0.0]]])
    torch.testing.assert_close(Projective().map_points(params, pts), expected)


def test_projective_divide_is_safe_at_the_horizon():
    params = torch.tensor([[1.0, 0, 0, 0, 1, 0, -1.0, 0.0]], requires_grad=True)  # w = 1 - x: 0 at x = 1
    pts = torch.tensor([[[1.0, 0.0], [0.999, 0.5]]])
    out = Projective().map_points(params, pts)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(params.grad).all()
    h = torch.eye(3)[None]
    torch.testing.assert_close(apply_homography(h, pts), pts)


# --- thin-plate spline ---------------------------------------------------------------------------------------


def test_tps_interpolates_its_control_points():
    t = ThinPlateSpline(grid_size=3)
    assert t.num_params == 18
    torch.manual_seed(2)
    q = t.identity() + 0.2 * torch.randn(2, 18)
    control = t.control.float().expand(2, -1, -1)
    torch.testing.assert_close(t.map_points(q, control), q.view(2, 9, 2), atol=1e-4, rtol=0)


def test_tps_reproduces_an_affine_exactly():
    t, aff = ThinPlateSpline(grid_size=4), Affine()
    theta = torch.tensor([[0.9, -0.2, 0.1, 0.3, 1.1, -0.2]])
    q = aff.map_points(theta, t.control.float()[None]).flatten(1)  # control points moved by the affine
    pts = base_grid(1, 6, 6).reshape(1, -1, 2)
    torch.testing.assert_close(t.map_points(q, pts), aff.map_points(theta, pts), atol=1e-4, rtol=0)


def test_tps_bends_between_control_points():
    t = ThinPlateSpline(grid_size=3)
    q = t.identity().clone()
    q[8] += 0.3  # move the centre control point (index 4: x at 8) right
    out = t.map_points(q[None], torch.tensor([[[0.0, 0.0], [0.25, 0.0], [-1.0, -1.0]]]))[0]
    assert out[0, 0] == pytest.approx(0.3, abs=1e-4)  # the moved point
    assert 0.25 < out[1, 0] < 0.55  # its neighbourhood follows, less
    torch.testing.assert_close(out[2], torch.tensor([-1.0, -1.0]), atol=1e-4, rtol=0)  # a corner stays


def test_tps_grid_size_is_checked():
    with pytest.raises(ConfigError, match="grid_size=1"):
        ThinPlateSpline(grid_size=1)


# --- configs and presets ---------------------------------------------------------------------------------------


def _network(overrides: list[str]):
    return build_network(OmegaConf.to_container(compose(overrides), resolve=True))


def test_global_transform_restricts_every_st_and_one_st_can_be_overridden():
    net = _network(["model=two_st", "transform=scale_translation"])
    assert [st.transform.name for st in net.transformers.values()] == ["scale_translation"] * 2
    net = _network(
        ["model=two_st", "transform=scale_translation", "+transform@model.transformers.conv2.transform=rotation"]
    )
    assert net.transformers["input"].transform.name == "scale_translation"
    assert net.transformers["conv2"].transform.name == "rotation"
    assert net.transformers["conv2"].regressor.out_features == 1


def test_three_st_preset_is_arcos_garcia():
    cfg = compose(["model=three_st"])
    net = build_network(OmegaConf.to_container(cfg, resolve=True))
    assert [b.out_channels for b in net.backbone.blocks] == [200, 250, 350]
    assert net.backbone.classifier.in_features == 400
    assert net.positions == {"input": 0, "conv1": 1, "conv2": 2}
    assert cfg.model.transformers.input.locnet.widths == [250, 250, 250]
    assert cfg.model.transformers.conv1.locnet.widths == cfg.model.transformers.conv2.locnet.widths == [150, 200, 300]


def test_lecun_backbone_is_two_convs_with_multiscale_features():
    net = _network(["backbone=lecun", "model=conv_st", "data.image_size=32"])
    assert [b.out_channels for b in net.backbone.blocks] == [108, 200]
    assert net.backbone.multiscale and net.backbone.classifier.in_features == 100
    # conv1's 16x16 output pooled to conv2's 8x8, beside conv2's: (108 + 200) * 8 * 8 features.
    assert net.backbone.fc[2].in_features == (108 + 200) * 8 * 8
    assert not _network(["backbone=lecun", "model=conv_st", "model.backbone.multiscale=false"]).backbone.multiscale


def synth_overrides(tmp_path) -> list[str]:
    """A tiny synthetic set without a test split (fit only): a fast fast_dev_run."""
    return [
        "data=synth",
        "data.num_train=32",
        "data.num_val=16",
        "data.num_test=0",
        "data.batch_size=8",
        "data.eval_batch_size=16",
        f"run_dir={tmp_path / 'run'}",
        "wandb.mode=disabled",
        "trainer.fast_dev_run=true",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "trainer.accelerator=cpu",
    ]


@pytest.mark.parametrize("name", TRANSFORM_FILES)
def test_two_st_trains_with_every_transform(name, tmp_path):
    metrics = train(compose(synth_overrides(tmp_path) + TINY_TWO_ST + [f"transform={name}"]))
    assert 0.0 <= metrics["val/acc_best"] <= 1.0


def test_three_st_fast_dev_run_on_synth(tmp_path):
    metrics = train(compose(synth_overrides(tmp_path) + ["model=three_st"]))
    assert metrics["model/params"] > 3_000_000 and 0.0 <= metrics["val/acc_best"] <= 1.0
