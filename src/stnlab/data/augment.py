"""On-device geometric and photometric jitter of uint8-derived float batches (off by default, as the reference)."""

from __future__ import annotations

import math

import torch
from torch import nn

from stnlab.geometry import affine_matrix, warp


class RandomAffineJitter(nn.Module):
    """Random rotation (degrees), isotropic scale, translation (fraction of the image size) per image.

    Args:
        rotation: max absolute rotation in degrees.
        scale: (min, max) zoom factor of the content.
        translation: max absolute shift as a fraction of the image size.
        p: probability that an image is jittered at all.
    """

    def __init__(
        self, rotation: float = 10.0, scale: tuple[float, float] = (0.9, 1.1), translation: float = 0.1, p: float = 1.0
    ):
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
        return warp(x, affine_matrix(angle, inv_s, t), padding_mode="border")
