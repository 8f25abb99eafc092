"""Spatial contrastive normalisation, as Torch7's ``nn.SpatialContrastiveNormalization``.

Subtractive step: remove the Gaussian-weighted local mean taken over the
neighbourhood *and all channels*; divisive step: divide by the local standard
deviation, floored at its per-image mean (and at ``eps``), so flat regions are not
amplified. Borders are corrected by the kernel mass that falls inside the image,
as the original does.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn


def gaussian_kernel1d(size: int = 7, sigma: float = 0.25) -> torch.Tensor:
    """Torch7 ``image.gaussian1D(size)``: sigma is relative to ``size``; normalised to sum 1."""
    center = size / 2 + 0.5
    i = torch.arange(1, size + 1, dtype=torch.float64)
    k = torch.exp(-(((i - center) / (sigma * size)) ** 2) / 2)
    return (k / k.sum()).float()


class SpatialContrastiveNorm(nn.Module):
    def __init__(self, channels: int, size: int = 7, eps: float = 1e-4):
        super().__init__()
        if size % 2 != 1:
            raise ValueError(f"contrast-norm kernel size must be odd, got {size}")
        self.channels, self.eps, self.pad = channels, eps, size // 2
        k = gaussian_kernel1d(size)
        self.register_buffer("kernel", torch.outer(k, k)[None, None], persistent=False)

    def _local_mean(self, x: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
        # (N, C, H, W) -> (N, 1, H, W): Gaussian mean over the window and across channels.
        return F.conv2d(x.mean(1, keepdim=True), self.kernel, padding=self.pad) / coef

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ones = torch.ones_like(x[:1, :1])
        coef = F.conv2d(ones, self.kernel, padding=self.pad)
        centred = x - self._local_mean(x, coef)
        std = self._local_mean(centred.square(), coef).clamp_min(0).sqrt()
        floor = std.mean(dim=(2, 3), keepdim=True)
        return centred / torch.maximum(std, floor).clamp_min(self.eps)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, size={2 * self.pad + 1}"


