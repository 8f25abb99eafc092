"""What each ST of a trained network does, expressed on the *input image*.

Every ST maps its output coordinates to its input coordinates (see
:mod:`stnlab.geometry`); coordinates are normalised and resolution-free, so an
ST placed after conv block k (whose input is a feature map) is drawn on the image as
the earlier STs present it: the view of ST k is the input image resampled through the
chain T_0 . T_1 . ... . T_{k-1} of the STs before it (an approximation for feature maps,
exact for the input ST). For each ST, the trace holds that view, the sampled region's
outline in it (the output's border mapped through T_k: the grid's border points are
the input coordinates) and the view after the ST.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from stnlab.geometry import base_grid, border_points, sample
from stnlab.models.transforms import Transform

__all__ = ["STView", "border_points", "trace_sts"]


@dataclass
class STView:
    """One ST over a batch. ``inputs``/``outputs`` uint8 (N, 3, H, W) image-space views before and after
    the ST; ``outline`` (N, P, 2) the output border in the normalised coordinates of ``inputs``
    (a closed polyline); ``params`` (N, num_params) the regressed parameters."""

    name: str
    position: int
    inputs: torch.Tensor
    outputs: torch.Tensor
    outline: torch.Tensor
    params: torch.Tensor


def _to_image(points: torch.Tensor, chain: list[tuple[Transform, torch.Tensor]]) -> torch.Tensor:
    """Coordinates in the view after ``chain`` -> coordinates in the input image."""
    for transform, params in reversed(chain):
        points = transform.map_points(params, points)
    return points


def _resample(images: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    n, _, h, w = images.shape
    out = sample(images.float(), points.reshape(n, h, w, 2).to(images.device))
    return out.round().clamp(0, 255).to(torch.uint8)


@torch.no_grad()
def trace_sts(module, images: torch.Tensor) -> list[STView]:
    """Run ``module`` (an :class:`~stnlab.training.module.STNModule`) on uint8 images (N, 3, H, W) and
    return one :class:`STView` per ST, in forward order. Empty for a network without STs."""
    was_training = module.training
    module.eval()
    try:
        records: dict = {}
        module.net(module.preprocess(images.to(module.device)), st_outputs=records)
    finally:
        module.train(was_training)
    images = images.cpu()
    n, _, h, w = images.shape
    grid = base_grid(n, h, w).reshape(n, h * w, 2)
    border = border_points().expand(n, -1, -1)
    chain: list[tuple[Transform, torch.Tensor]] = []
    views = []
    for name, (_, params, _) in records.items():
        transform = module.net.transformers[name].transform
        params = params.detach().float().cpu()
        inputs = _resample(images, _to_image(grid, chain))
        outline = transform.map_points(params, border)
        chain.append((transform, params))
        outputs = _resample(images, _to_image(grid, chain))
        views.append(STView(name, module.net.positions[name], inputs, outputs, outline, params))
    return views
