"""Input normalisation, applied to uint8 batches on the device (not stored in the cache).

Global: per-channel mean and std of the *training split* in [0, 1] units.
Per image: each image's own mean and std over its pixels and channels (dark and washed-out signs end up
alike; colour ratios are kept).
Local: spatial contrastive normalisation with a 7-tap Gaussian (:mod:`stnlab.contrast_norm`), either
Torch7's exactly (``torch7``, as the reference) or with the local std floored at its per-image mean
(``floored``, stnlab's earlier variant, which checkpoints written before the choice existed used).
Kept as a module with buffers so that checkpoints carry their own statistics.
"""

from __future__ import annotations

import torch
from torch import nn

from stnlab.contrast_norm import SpatialContrastiveNorm


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of uint8 images (N, 3, H, W), in [0, 1] units, in float64."""
    n = 0
    s = torch.zeros(images.shape[1], dtype=torch.float64)
    sq = torch.zeros_like(s)
    for i in range(0, len(images), chunk):
        x = images[i : i + chunk].to(torch.float64).div_(255)
        s += x.sum(dim=(0, 2, 3))
        sq += x.square().sum(dim=(0, 2, 3))
        n += x.numel() // x.shape[1]
    mean = s / n
    std = (sq / n - mean.square()).clamp_min(1e-12).sqrt()
    return mean, std


class InputNormalizer(nn.Module):
    """uint8 (N, C, H, W) -> float32 (N, C, H, W), globally then (optionally) locally normalised."""

    VARIANTS = ("torch7", "floored")

    def __init__(
        self,
        channels: int = 3,
        global_norm: bool = True,
        local_norm: bool = True,
        variant: str = "torch7",
        per_image: bool = False,
    ):
        super().__init__()
        if variant not in self.VARIANTS:
            raise ValueError(f"normalize.variant={variant} is not one of {', '.join(self.VARIANTS)}")
        if per_image and global_norm:
            raise ValueError("normalize.per_image=true replaces the global statistics; set normalize.global_norm=false")
        self.global_norm, self.per_image = global_norm, per_image
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("std", torch.ones(channels))
        self.local = SpatialContrastiveNorm(channels, legacy=variant == "floored") if local_norm else None

    def set_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean)
        self.std.copy_(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().div(255)
        if self.per_image:
            # Floored std: a flat (blank) image stays flat instead of amplifying its noise.
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            std = x.std(dim=(1, 2, 3), keepdim=True).clamp_min(1.0 / 255)
            x = (x - mean) / std
        if self.global_norm:
            x = (x - self.mean[:, None, None]) / self.std[:, None, None]
        if self.local is not None:
            x = self.local(x)
        return x
