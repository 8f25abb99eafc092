"""On-device geometric and photometric jitter of uint8-derived float batches (off by default, as the reference)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from stnlab.models.transforms import ALIGN_CORNERS


class RandomAffineJitter(nn.Module):
    """Random rotation (degrees), isotropic scale, translation (fraction of the half-size) per image.

    Args:
        rotation: max absolute rotation in degrees.
        scale: (min, max) zoom factor of the content.
        translation: max absolute shift as a fraction of the image size.
        p: probability that an image is jittered at all.
    """

    def __init__(self, rotation: float = 10.0, scale: tuple[float, float] = (0.9, 1.1), translation: float = 0.1, p: float = 1.0):
        super().__init__()
        self.rotation, self.scale, self.translation, self.p = rotation, tuple(scale), translation, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        dev = x.device
        angle = (torch.rand(n, device=dev) * 2 - 1) * math.radians(self.rotation)
        lo, hi = self.scale
        # The grid maps output to input: sampling at 1/s zooms the content by s.
        inv_s = 1.0 / (lo + torch.rand(n, device=dev) * (hi - lo))
        t = (torch.rand(n, 2, device=dev) * 2 - 1) * 2 * self.translation
        keep = torch.rand(n, device=dev) >= self.p
        angle = angle.masked_fill(keep, 0.0)
        inv_s = inv_s.masked_fill(keep, 1.0)
        t = t.masked_fill(keep[:, None], 0.0)
        cos, sin = torch.cos(angle) * inv_s, torch.sin(angle) * inv_s
        theta = torch.stack([torch.stack([cos, -sin, t[:, 0]], 1), torch.stack([sin, cos, t[:, 1]], 1)], 1)
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=ALIGN_CORNERS)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=ALIGN_CORNERS)
