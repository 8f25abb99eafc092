"""Controlled geometric distortions of evaluation images, and accuracy per distortion level.

Warps follow :mod:`stnlab.geometry`: normalised coordinates (x right, y down, both in [-1, 1]),
matrices mapping *output* to *input* positions (2x3 for rotation, scale and translation, a 3x3
homography for perspective), bilinear sampling with zero (black) padding. A distortion is applied
to float images in [0, 255] *before* the model's own preprocessing. Level 0 (scale 1) is the
identity: the clean images.

Levels, and how image i of the split (its index in the split) is distorted:

- ``rotation``: degrees; the content turns by +level for even i, -level for odd i
  (+ is counter-clockwise on screen).
- ``scale``: zoom factor of the content (0.6 = shrunk to 60% about the centre, black
  border; 1.4 = enlarged, edges cut off).
- ``translation``: shift as a fraction of the image size, in the direction +x, +y,
  -x, -y for i mod 4 = 0, 1, 2, 3.
- ``perspective``: tilt of the sign's plane in degrees, about its vertical axis
  (i mod 4 = 0, 2, with opposite signs) or horizontal axis (1, 3), seen by a pinhole
  camera at ``CAMERA_DISTANCE`` half-sizes from the sign.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch

from stnlab.evaluation.metrics import top1_accuracy
from stnlab.geometry import affine_matrix, invert, sample, sampling_grid

CAMERA_DISTANCE = 3.0


def rotation_matrix(level: float, index: torch.Tensor) -> torch.Tensor:
    """(N,) image indices -> theta (N, 2, 3), float64: content turned by +-``level`` degrees."""
    # Output p samples the input at R(a) p: the content turns by +a counter-clockwise on screen (y down).
    return affine_matrix(angle=math.radians(level) * (1 - 2 * (index % 2)).double())


def scale_matrix(level: float, index: torch.Tensor) -> torch.Tensor:
    """Content zoomed by ``level`` about the centre: the grid samples the input at p / level."""
    if level <= 0:
        raise ValueError(f"scale level {level} must be positive")
    return affine_matrix(scale=torch.full((len(index),), 1.0 / level, dtype=torch.float64))


_DIRECTIONS = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)


def translation_matrix(level: float, index: torch.Tensor) -> torch.Tensor:
    """Content shifted by ``level`` of the image size (normalised coordinates span 2 per size)."""
    return affine_matrix(translation=-2.0 * level * _DIRECTIONS[index % 4])


def tilt_homography(
    degrees: torch.Tensor, vertical_axis: torch.Tensor, distance: float = CAMERA_DISTANCE
) -> torch.Tensor:
    """(N, 3, 3) forward maps sign -> image of a plane tilted by ``degrees`` about its vertical (or horizontal) axis.

    A sign point (x, y) at depth ``distance`` moves to (x cos t, y, distance + x sin t) (vertical axis)
    and projects to (x cos t, y) / (1 + x sin t / distance): H = [[cos t, 0, 0], [0, 1, 0], [sin t / d, 0, 1]].
    """
    t = torch.deg2rad(degrees.double())
    h = torch.eye(3, dtype=torch.float64).repeat(len(t), 1, 1)
    v = vertical_axis.bool()
    h[v, 0, 0] = torch.cos(t[v])
    h[v, 2, 0] = torch.sin(t[v]) / distance
    h[~v, 1, 1] = torch.cos(t[~v])
    h[~v, 2, 1] = torch.sin(t[~v]) / distance
    return h


def perspective_matrix(level: float, index: torch.Tensor) -> torch.Tensor:
    """Homographies (N, 3, 3): the inverse of :func:`tilt_homography` (output -> input), normalised to h22 = 1."""
    sign = torch.where(index % 4 < 2, 1.0, -1.0).double()
    h = invert(tilt_homography(level * sign, index % 2 == 0))
    return h / h[:, 2:, 2:]


@dataclass(frozen=True)
class Distortion:
    unit: str
    levels: tuple[float, ...]
    matrix: Callable[[float, torch.Tensor], torch.Tensor]  # (level, image indices (N,)) -> (N, 2 or 3, 3), float64

    def grid(self, level: float, index: torch.Tensor, size: tuple[int, int, int, int], device=None) -> torch.Tensor:
        """The sampling grid (N, H, W, 2) of images ``index`` at ``level`` for a batch of ``size`` (N, C, H, W)."""
        return sampling_grid(self.matrix(level, index.cpu()).to(device=device, dtype=torch.float32), size)

    def apply(self, images: torch.Tensor, level: float, index: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 or float images (N, C, H, W) in [0, 255] -> float32 distorted images in [0, 255]."""
        x = images.float()
        if index is None:
            index = torch.arange(len(x))
        return sample(x, self.grid(level, index, tuple(x.shape), x.device))


DISTORTIONS: dict[str, Distortion] = {
    "rotation": Distortion("degrees", (0, 5, 10, 15, 20, 25, 30), rotation_matrix),
    "scale": Distortion("zoom factor", (0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4), scale_matrix),
    "translation": Distortion("fraction of the size", (0, 0.05, 0.1, 0.15, 0.2), translation_matrix),
    "perspective": Distortion("degrees of tilt", (0, 10, 20, 30, 40, 50), perspective_matrix),
}


def accuracy_curve(
    model: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    labels: torch.Tensor,
    distortion: Distortion,
    levels: tuple[float, ...] | None = None,
    batch_size: int = 500,
    device: torch.device | str = "cpu",
) -> list[tuple[float, float]]:
    """``[(level, top-1 accuracy), ...]`` of ``model`` (images in [0, 255] -> logits) on the distorted split."""
    return [
        (
            float(level),
            top1_accuracy(model, images, labels, batch_size, device, partial(distortion.apply, level=float(level))),
        )
        for level in (levels if levels is not None else distortion.levels)
    ]
