"""Geometric robustness: the distortions' warps, the accuracy fall of a no-ST model, ``src/robustness.py``."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from conftest import compose, run_app
from short_runs import single_thread
from stnlab.evaluation.robustness import (
    CAMERA_DISTANCE,
    DISTORTIONS,
    accuracy_curve,
    perspective_matrix,
    tilt_homography,
)
from stnlab.geometry import ALIGN_CORNERS, apply_homography, base_grid


@pytest.fixture(autouse=True)
def _one_thread():
    with single_thread():
        yield


def _image(size: int = 8) -> torch.Tensor:
    return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)) * 255


def _warp(name: str, level: float, image: torch.Tensor, index: int = 0) -> torch.Tensor:
    return DISTORTIONS[name].apply(image, level, torch.tensor([index]))


@pytest.mark.parametrize("name, level", [("rotation", 0), ("scale", 1), ("translation", 0), ("perspective", 0)])
def test_level_zero_is_the_clean_image(name, level):
    img = _image()
    assert torch.allclose(_warp(name, level, img), img, atol=1e-3)
    assert level in DISTORTIONS[name].levels


def test_default_levels_span_the_requested_ranges():
    assert (min(DISTORTIONS["rotation"].levels), max(DISTORTIONS["rotation"].levels)) == (0, 30)
    assert (min(DISTORTIONS["scale"].levels), max(DISTORTIONS["scale"].levels)) == (0.6, 1.4)
    assert (min(DISTORTIONS["translation"].levels), max(DISTORTIONS["translation"].levels)) == (0, 0.2)


def test_rotation_by_90_degrees_is_rot90_alternating_in_sign():
    img = _image()
    # Even images turn counter-clockwise on screen (torch.rot90 with k=1 over (H, W)), odd ones clockwise.
    assert torch.allclose(_warp("rotation", 90, img, index=0), torch.rot90(img, 1, dims=(2, 3)), atol=1e-3)
    assert torch.allclose(_warp("rotation", 90, img, index=1), torch.rot90(img, -1, dims=(2, 3)), atol=1e-3)


def test_rotation_grid_is_the_affine_grid_of_the_rotation_matrix():
    a = math.radians(20)
    theta = torch.tensor([[[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]]])
    grid = DISTORTIONS["rotation"].grid(20, torch.tensor([0]), (1, 3, 16, 16))
    assert torch.allclose(grid, F.affine_grid(theta, [1, 3, 16, 16], align_corners=ALIGN_CORNERS), atol=1e-6)


def test_scale_shrinks_and_enlarges_the_content_about_the_centre():
    img = _image()
    half = _warp("scale", 0.5, img)  # content at half size in the centre, black around it
    assert torch.allclose(half[..., 2:6, 2:6], F.avg_pool2d(img, 2), atol=1e-3)
    border = torch.ones(8, 8, dtype=torch.bool)
    border[2:6, 2:6] = False
    assert half[..., border].abs().max() < 1e-3
    double = _warp("scale", 2.0, img)  # the central half, enlarged twice (interior pixels: no edge effects)
    expect = F.interpolate(img[..., 2:6, 2:6], scale_factor=2, mode="bilinear", align_corners=False)
    assert torch.allclose(double[..., 1:7, 1:7], expect[..., 1:7, 1:7], atol=1e-3)


def test_translation_shifts_by_a_fraction_of_the_size_in_four_directions():
    img = _image()
    right = _warp("translation", 0.25, img, index=0)  # 0.25 of 8 pixels = 2 pixels
    assert torch.allclose(right[..., 2:], img[..., :-2], atol=1e-3) and right[..., :2].abs().max() < 1e-3
    down = _warp("translation", 0.25, img, index=1)
    assert torch.allclose(down[..., 2:, :], img[..., :-2, :], atol=1e-3)
    left = _warp("translation", 0.25, img, index=2)
    assert torch.allclose(left[..., :-2], img[..., 2:], atol=1e-3)


def test_perspective_grid_inverts_the_pinhole_model_of_a_tilted_sign():
    t = math.radians(40)
    pts = base_grid(1, 5, 5).reshape(1, 25, 2).double()  # points on the sign
    x, y = pts[..., 0], pts[..., 1]
    w = 1 + x * math.sin(t) / CAMERA_DISTANCE
    seen = torch.stack([x * math.cos(t) / w, y / w], -1)  # where the camera sees them (tilt about the vertical axis)
    # The distortion's grid (its homography's mapping) samples each seen point back at its sign point.
    back = apply_homography(perspective_matrix(40, torch.tensor([0])), seen)
    assert torch.allclose(back, pts, atol=1e-6)
    assert torch.allclose(tilt_homography(torch.tensor([0.0]), torch.tensor([True]))[0], torch.eye(3).double())


def test_perspective_tilt_makes_the_near_side_taller():
    square = torch.zeros(1, 3, 32, 32)
    square[..., 8:24, 8:24] = 255.0  # a white square, small enough to stay inside the image when tilted

    def extent(index, dim):
        mask = _warp("perspective", 40, square, index)[0, 0] > 127
        sizes = mask.sum(dim)
        on = sizes.nonzero().flatten()
        return sizes[on[0]].item(), sizes[on[-1]].item()

    left, right = extent(0, 0)  # column heights; tilt about the vertical axis: x < 0 is nearer the camera
    assert left > right + 2
    assert extent(2, 0) == (right, left)  # the opposite tilt mirrors it
    top, bottom = extent(1, 1)  # row widths; tilt about the horizontal axis: y < 0 is nearer
    assert top > bottom + 2


# Four synthetic sign classes in the same colours (white), told apart by shape and glyph orientation:
# triangle + left arrow, triangle + up arrow, diamond + bar, square + bar.
SIGN_CLASSES = torch.tensor([15, 42, 23, 40])


def _upright_signs(n: int, size: int, seed: int):
    from stnlab.data.synth import random_warps, render

    gen = torch.Generator().manual_seed(seed)
    labels = SIGN_CLASSES[torch.arange(n) % len(SIGN_CLASSES)]
    warps = random_warps(n, gen, rotation=0.0, scale=(0.9, 1.0), translation=0.05, perspective=0.0)
    return render(labels, warps, size, gen, clutter=0.2), labels


@pytest.mark.e2e
def test_accuracy_of_a_no_st_model_falls_under_heavy_rotation():
    from stnlab.data.normalize import channel_stats
    from stnlab.training.module import build_module

    torch.manual_seed(0)
    size = 20
    train_x, train_y = _upright_signs(400, size, seed=1)
    val_x, val_y = _upright_signs(200, size, seed=2)
    cfg = OmegaConf.to_container(
        compose(
            [
                "model=no_st",
                f"data.image_size={size}",
                "model.backbone.widths=[16,32,48]",
                "model.backbone.fc=64",
                "normalize.local_norm=false",
            ]
        ),
        resolve=True,
    )
    model = build_module(cfg)
    model.normalizer.set_stats(*(s.float() for s in channel_stats(train_x)))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(6):
        for idx in torch.randperm(len(train_y)).split(32):
            loss = F.cross_entropy(model(train_x[idx]), train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    curve = dict(accuracy_curve(model, val_x, val_y, DISTORTIONS["rotation"], (0, 30, 45)))
    assert curve[0] >= 0.85, curve  # it learned the upright signs
    assert curve[30] < curve[0] - 0.3 and curve[45] < curve[0] - 0.5, curve


@pytest.mark.e2e
def test_robustness_cli_with_two_checkpoints(short_runs, tmp_path, capsys):
    ckpts = [short_runs[k] / "checkpoints" / "last.ckpt" for k in ("run_a", "run_b")]
    run_app(
        "robustness",
        [
            f"ckpt=[{ckpts[0]},{ckpts[1]}]",
            "split=val",
            f"out={tmp_path}",
            "rotation=[0,30]",
            "scale=[0.6,1,1.4]",
            "translation=[0,0.2]",
            "perspective=[0,40]",
        ],
    )
    table = json.loads((tmp_path / "robustness_val.json").read_text())
    assert [m["label"] for m in table["models"]] == ["custom-no_st-affine-gtsrb32-s1", "custom-no_st-affine-gtsrb32-s2"]
    assert table["distortions"]["scale"] == {"unit": "zoom factor", "levels": [0.6, 1.0, 1.4]}
    assert table["num_images"] == 12
    for m in table["models"]:
        acc = m["accuracy"]
        assert set(acc) == {"rotation", "scale", "translation", "perspective"}
        # Every identity level scores the clean accuracy.
        assert acc["rotation"][0] == acc["scale"][1] == acc["translation"][0] == acc["perspective"][0]
        assert all(0 <= a <= 1 for a in acc["rotation"] + acc["scale"])
    assert (tmp_path / "robustness_val.png").read_bytes()[:4] == b"\x89PNG"
    out = capsys.readouterr().out
    assert "| rotation (degrees) | 0 | 30 |" in out and "custom-no_st-affine-gtsrb32-s2" in out


def test_robustness_wandb_line_plots(short_runs, tmp_path):
    from stnlab.evaluation.robustness_report import run_robustness
    from stnlab.tracking.runfile import read_run

    ckpt = short_runs["run_a"] / "checkpoints" / "last.ckpt"
    run_robustness(
        [ckpt], "val", distortions=["rotation"], levels={"rotation": [0, 20]}, out_dir=tmp_path, wandb_mode="offline"
    )
    (offline,) = tmp_path.glob("wandb/offline-run-*")
    record = read_run(offline)
    assert record.job_type == "robustness" and record.config["models"] == ["custom-no_st-affine-gtsrb32-s1"]
    (table,) = record.media("robustness/rotation_table")  # the data behind wandb.plot.line_series
    assert table["nrows"] == 2  # one row per (model, level)
    assert record.media("robustness/curves_png")[0]["_type"] == "image-file"


def test_bad_options_are_user_errors_before_any_work():
    from stnlab.errors import ConfigError
    from stnlab.evaluation.robustness_report import run_robustness

    with pytest.raises(ConfigError, match="unknown distortion.*shear.*choose from rotation"):
        run_robustness(["missing.ckpt"], distortions=["shear"])
    with pytest.raises(ConfigError, match="scale levels .* must be positive"):
        run_robustness(["missing.ckpt"], levels={"scale": [0, 1]})
    with pytest.raises(ConfigError, match="no checkpoint given"):
        run_robustness([])


def test_command_line_lists_and_types():
    from stnlab.apps.robustness import options
    from stnlab.config import compose

    values = options(compose("robustness", ["ckpt=[a.ckpt,b.ckpt]", "rotation=[0,45]", "data.root=/d", "limit=100"]))
    assert values["ckpt"] == ["a.ckpt", "b.ckpt"] and values["levels"] == {"rotation": [0.0, 45.0]}
    assert values["limit"] == 100 and values["data"] == {"root": "/d"}
    assert values["wandb"] == "disabled" and values["split"] == "val"
    assert options(compose("robustness", ["ckpt=a.ckpt", "wandb=true"]))["wandb"] is None  # $WANDB_MODE, else offline
    assert options(compose("robustness", ["ckpt=a.ckpt", "distortions=rotation"]))["distortions"] == ["rotation"]


@pytest.mark.parametrize(
    "arg, message",
    [
        ("batch_size=-1", "batch_size=-1: expected a positive integer"),  # printed 0.00% everywhere
        ("batch_size=0", "batch_size=0: expected a positive integer"),
        ("limit=0", "limit=0: expected a positive integer"),  # was taken as "all"
        ("limit=-5", "limit=-5: expected a positive integer"),  # was "all but 5"
        ("rotation=[-30,nan]", "rotation=[-30,nan]: expected a list of finite numbers"),  # wrote NaN levels
        ("translation=[0,inf]", "translation=[0,inf]: expected a list of finite numbers"),
        ("perspective=ten", "perspective=ten: expected a list of numbers"),
        ("rotation=[]", "rotation=[]: expected a list of finite numbers"),
        ("scale=[0,1]", "scale=[0,1]: expected numbers > 0"),
        (
            "ckpt=other.ckpt",
            "ckpt= is given 2 times and only the last would count; give them as one list: 'ckpt=[a,b]'",
        ),
        ("rotation=0,30", "Ambiguous value for argument 'rotation=0,30'"),  # the spelling before Hydra
    ],
)
def test_robustness_cli_bad_values_are_one_line_before_any_work(arg, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_app("robustness", ["ckpt=missing.ckpt", arg])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"stnlab: error: {message}" or (err.startswith(f"stnlab: error: {message}") and "\n" not in err)


def test_robustness_figure_says_its_split_and_number_of_images(tmp_path):
    from PIL import Image

    from stnlab.evaluation.plots import robustness_figure, save

    curves = {
        "rotation": {"two_st": [(0, 0.98), (30, 0.9)], "no_st": [(0, 0.97), (30, 0.7)]},
        "scale": {"two_st": [(0.6, 0.8), (1, 0.98)], "no_st": [(0.6, 0.6), (1, 0.97)]},
    }
    units = {"rotation": "degrees", "scale": "zoom factor"}
    fig = robustness_figure(curves, units, "val", 300)
    assert fig._suptitle.get_text() == "Accuracy under distortions: val split, 300 images per point"
    assert [ax.get_xlabel() for ax in fig.axes] == ["degrees", "zoom factor"]
    assert fig.axes[0].get_legend() is not None and fig.axes[0].get_ylabel() == "accuracy (%)"
    width, height = Image.open(save(robustness_figure(curves, units, "val", 300), tmp_path / "r.png")).size
    assert 800 <= width <= 1100 and 350 <= height <= 500
