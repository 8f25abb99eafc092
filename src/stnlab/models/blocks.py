"""The conv block of the reference: conv, ReLU, 2x2 max-pool, optional spatial contrastive norm."""

from __future__ import annotations

from torch import nn

from stnlab.models.contrast_norm import SpatialContrastiveNorm


class ConvBlock(nn.Sequential):
    """(N, C_in, H, W) -> (N, C_out, H', W') with H' = (H + 2p - k + 1) // 2."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 5, padding: int = 2, contrast_norm: bool = False):
        layers = [
            nn.Conv2d(in_channels, out_channels, kernel, padding=padding),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        ]
        if contrast_norm:
            layers.append(SpatialContrastiveNorm(out_channels))
        super().__init__(*layers)
        self.out_channels = out_channels

    @staticmethod
    def out_size(size: int, kernel: int, padding: int) -> int:
        return (size + 2 * padding - kernel + 1) // 2
