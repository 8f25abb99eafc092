"""Spatial contrastive normalisation, exactly Torch7's ``nn.SpatialContrastiveNormalization``.

A bottom-layer image operation (no stnlab imports): the input normaliser (:mod:`stnlab.data.normalize`)
and the reference's conv blocks (:mod:`stnlab.models.blocks`) both use it.

Torch7 (nn/SpatialSubtractiveNormalization.lua, SpatialDivisiveNormalization.lua), for an input x
(N, C, H, W) and a kernel k normalised to sum 1, with ``*`` a zero-padded 'same' correlation:

- coef = mean_c(ones) * k: the kernel mass inside the image (1 in the interior, less near the borders);
- subtractive: y = x - (mean_c(x) * k) / coef, one local mean over the window *and all channels*;
- divisive: s = sqrt(mean_c(y^2) * k) / coef (the *std* is divided by coef, not the variance),
  out = y / (s if s > threshold else thresval), a fixed threshold (default 1e-4).

``legacy=True`` is stnlab's earlier variant (variance divided by coef, std floored at its per-image
mean and at ``threshold``): ``normalize.variant=floored``. It bounds the gain in flat regions, where
Torch7's fixed threshold lets sensor and quantisation noise through at unit variance.
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
    """(N, C, H, W) -> (N, C, H, W), as ``nn.SpatialContrastiveNormalization(C, image.gaussian1D(size),
    threshold, thresval)`` (a 1-D kernel is applied separably, the same as its outer product here)."""

    def __init__(
        self, channels: int, size: int = 7, threshold: float = 1e-4, thresval: float | None = None, legacy: bool = False
    ):
        super().__init__()
        if size % 2 != 1:
            raise ValueError(f"contrast-norm kernel size must be odd, got {size}")
        self.channels, self.pad, self.legacy = channels, size // 2, legacy
        self.threshold = threshold
        self.thresval = threshold if thresval is None else thresval
        k = gaussian_kernel1d(size)
        self.register_buffer("kernel", torch.outer(k, k)[None, None], persistent=False)

    def _window_mean(self, x: torch.Tensor) -> torch.Tensor:
        # (N, C, H, W) -> (N, 1, H, W): kernel-weighted sum over the window of the channel mean.
        return F.conv2d(x.mean(1, keepdim=True), self.kernel, padding=self.pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coef = self._window_mean(torch.ones_like(x[:1, :1]))
        centred = x - self._window_mean(x) / coef
        var = self._window_mean(centred.square())
        if self.legacy:
            std = (var / coef).sqrt()
            return centred / torch.maximum(std, std.mean(dim=(2, 3), keepdim=True)).clamp_min(self.threshold)
        keep = var.sqrt() / coef > self.threshold
        # sqrt of a thresholded (e.g. flat, var = 0) position would give 0 * inf = nan gradients: take it of 1 there.
        std = torch.where(keep, var, torch.ones_like(var)).sqrt() / coef
        return centred / torch.where(keep, std, torch.full_like(std, self.thresval))

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, size={2 * self.pad + 1}, threshold={self.threshold}" + ", legacy" * self.legacy
        )
