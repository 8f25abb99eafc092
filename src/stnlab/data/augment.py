"""On-device jitter of training batches (off by default, as the reference): geometric, then photometric.

Batches arrive as float (N, C, H, W) in [0, 255] units, before the input normalisation.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from stnlab.geometry import affine_matrix, warp


class RandomJitter(nn.Module):
    """Random rotation, isotropic scale and translation per image, then (optionally) brightness and contrast; the
    options are described in conf/augment/jitter.yaml.

    A per-image standardisation (``normalize=per_image``) undoes any gain and contrast change: the
    photometric part only matters with the other normalisations.
    """

    def __init__(
        self,
        rotation: float = 10.0,
        scale: tuple[float, float] = (0.9, 1.1),
        translation: float = 0.1,
        p: float = 1.0,
        brightness: float = 0.0,
        contrast: float = 0.0,
    ):
        super().__init__()
        if not 0 <= brightness < 1 or not 0 <= contrast < 1:
            raise ValueError(f"augment.brightness={brightness} and augment.contrast={contrast} must be in [0, 1)")
        self.rotation, self.scale, self.translation, self.p = rotation, tuple(scale), translation, p
        self.brightness, self.contrast = brightness, contrast

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
        x = warp(x, affine_matrix(angle, inv_s, t), padding_mode="border")
        if self.contrast:
            c = 1 + (torch.rand(n, 1, 1, 1, device=dev) * 2 - 1) * self.contrast
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = (x - mean) * c + mean
        if self.brightness:
            x = x * (1 + (torch.rand(n, 1, 1, 1, device=dev) * 2 - 1) * self.brightness)
        if self.contrast or self.brightness:
            x = x.clamp(0, 255)
        return x


# The name of checkpoints written before photometric jitter existed.
RandomAffineJitter = RandomJitter
