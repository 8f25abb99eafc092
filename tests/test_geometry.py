"""stnlab.geometry against independent computations (known point mappings, F.affine_grid, pixel shifts), and the
layering it exists for: the data layer does not import the models layer."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from conftest import ROOT
from stnlab.geometry import (
    ALIGN_CORNERS,
    affine_matrix,
    base_grid,
    border_points,
    compose,
    homogeneous,
    invert,
    map_box,
    sampling_grid,
    to_pixels,
    transform_points,
    warp,
)


def _by_hand(a: float, sx: float, sy: float, tx: float, ty: float, x: float, y: float) -> tuple[float, float]:
    """R(a) diag(sx, sy) (x, y) + (tx, ty), one point, in plain floats."""
    u, v = sx * x, sy * y
    return math.cos(a) * u - math.sin(a) * v + tx, math.sin(a) * u + math.cos(a) * v + ty


def test_affine_matrix_maps_points_as_computed_by_hand():
    a, s, t = [0.3, -1.2], [1.5, 0.7], [[0.1, -0.2], [0.0, 0.4]]
    points = [(1.0, 0.0), (0.0, 1.0), (-0.5, 0.25)]
    theta = affine_matrix(
        torch.tensor(a, dtype=torch.float64), torch.tensor(s, dtype=torch.float64), torch.tensor(t, dtype=torch.float64)
    )
    out = transform_points(theta, torch.tensor([points], dtype=torch.float64))
    expected = [[_by_hand(a[i], s[i], s[i], *t[i], *p) for p in points] for i in range(2)]
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64))
    # Anisotropic scale, and the parts left out are the identity.
    aniso = affine_matrix(scale=torch.tensor([[2.0, 3.0]]))
    torch.testing.assert_close(aniso, torch.tensor([[[2.0, 0, 0], [0, 3.0, 0]]]))
    quarter = affine_matrix(angle=torch.tensor([math.pi / 2]))
    torch.testing.assert_close(transform_points(quarter, torch.tensor([[[1.0, 0.0]]])), torch.tensor([[[0.0, 1.0]]]))
    with pytest.raises(ValueError, match="at least one"):
        affine_matrix()


def test_compose_and_invert_are_those_of_the_point_maps():
    torch.manual_seed(0)
    a = affine_matrix(torch.rand(3), 0.5 + torch.rand(3), torch.randn(3, 2))
    b = affine_matrix(torch.rand(3), 0.5 + torch.rand(3, 2), torch.randn(3, 2))
    h = homogeneous(b).clone()
    h[:, 2, :2] = 0.1 * torch.randn(3, 2)  # a real homography
    p = torch.rand(3, 5, 2) * 2 - 1
    torch.testing.assert_close(transform_points(compose(a, b), p), transform_points(a, transform_points(b, p)))
    assert compose(a, b).shape == (3, 2, 3) and compose(a, h).shape == (3, 3, 3)
    torch.testing.assert_close(transform_points(compose(a, h), p), transform_points(a, transform_points(h, p)))
    for m in (a, h):
        torch.testing.assert_close(transform_points(invert(m), transform_points(m, p)), p, atol=1e-5, rtol=0)
    torch.testing.assert_close(compose(a, invert(a)), torch.eye(2, 3).expand(3, 2, 3), atol=1e-6, rtol=0)


@pytest.mark.parametrize("h, w", [(8, 8), (5, 7)])
def test_sampling_grid_is_torch_affine_grid(h, w):
    theta = torch.randn(2, 2, 3)
    expected = F.affine_grid(theta, [2, 1, h, w], align_corners=ALIGN_CORNERS)
    torch.testing.assert_close(sampling_grid(theta, (h, w)), expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(sampling_grid(homogeneous(theta), (2, 1, h, w)), expected, atol=1e-6, rtol=0)


def test_warp_by_whole_pixels_shifts_the_image():
    img = torch.arange(1.0, 1 + 3 * 6 * 8).view(1, 3, 6, 8)
    # Output x samples input x + 2 pixels (one pixel = 2 / W normalised units): the content moves 2 pixels left.
    out = warp(img, affine_matrix(translation=torch.tensor([[2 * 2 / 8, 0.0]])))
    torch.testing.assert_close(out[..., :-2], img[..., 2:], atol=1e-4, rtol=0)
    assert out[..., -2:].abs().max() == 0  # zero padding
    edge = warp(img, affine_matrix(translation=torch.tensor([[2 * 2 / 8, 0.0]])), padding_mode="border")
    torch.testing.assert_close(edge[..., -2:], img[..., -1:].expand(1, 3, 6, 2), atol=1e-4, rtol=0)
    # An output size of its own: half the resolution over the same region averages 2x2 blocks.
    half = warp(img, torch.eye(2, 3)[None], size=(3, 4))
    torch.testing.assert_close(half, F.avg_pool2d(img, 2), atol=1e-4, rtol=0)


def test_map_box_outlines_the_sampled_region():
    theta = affine_matrix(scale=torch.tensor([0.5]), translation=torch.tensor([[0.5, 0.0]]))  # right half, zoomed
    corners = map_box(theta)[0]
    expected = torch.tensor([[0.0, -0.5], [1.0, -0.5], [1.0, 0.5], [0.0, 0.5], [0.0, -0.5]])
    torch.testing.assert_close(corners, expected)
    assert map_box(theta, per_side=4).shape == (1, 17, 2)
    assert torch.equal(
        border_points(1), torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0]])
    )


def test_to_pixels_puts_pixel_centres_on_integers():
    pixels = to_pixels(base_grid(1, 3, 4)[0], (3, 4))
    cols, rows = torch.meshgrid(torch.arange(4.0), torch.arange(3.0), indexing="xy")
    torch.testing.assert_close(pixels, torch.stack([cols, rows], -1))
    torch.testing.assert_close(
        to_pixels(torch.tensor([[-1.0, -1.0], [1.0, 1.0]]), (3, 4)), torch.tensor([[-0.5, -0.5], [3.5, 2.5]])
    )


_LAYERS = """
import importlib.util, json, pkgutil, sys
import stnlab
before = set(sys.modules)
import stnlab.geometry, stnlab.contrast_norm
bottom = sorted(m for m in set(sys.modules) - before if m.startswith("stnlab"))
data = importlib.util.find_spec("stnlab.data").submodule_search_locations
for info in pkgutil.iter_modules(data, "stnlab.data."):
    __import__(info.name)
print(json.dumps({"bottom": bottom, "models": sorted(m for m in sys.modules if m.startswith("stnlab.models"))}))
"""


def test_data_does_not_import_models_and_geometry_imports_no_stnlab():
    # A fresh interpreter: this one has imported everything already.
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    res = subprocess.run([sys.executable, "-c", _LAYERS], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    found = json.loads(res.stdout.strip().splitlines()[-1])
    assert found["models"] == [], f"stnlab.data imports {found['models']}"
    assert found["bottom"] == ["stnlab.contrast_norm", "stnlab.geometry"]
