"""Conv blocks: the reference's (conv, ReLU, 2x2 max-pool, optional contrast norm) and a batch-normed
one for compact CPU networks (3x3 conv-BN-ReLU, once or more, then 2x2 max-pool)."""

from __future__ import annotations

from torch import nn

from stnlab.contrast_norm import SpatialContrastiveNorm


class ConvBlock(nn.Sequential):
    """(N, C_in, H, W) -> (N, C_out, H', W') with H' = (H + 2p - k + 1) // 2."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int = 5, padding: int = 2, contrast_norm: bool = False
    ):
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


class ConvBNBlock(nn.Sequential):
    """(N, C_in, H, W) -> (N, C_out, H // 2, W // 2): ``depth`` x (3x3 conv, BN, ReLU), then 2x2 max-pool.

    Same-padded 3x3 convs keep the size until the pool, so a block halves it exactly.
    """

    def __init__(self, in_channels: int, out_channels: int, depth: int = 1):
        if depth < 1:
            raise ValueError(f"a conv block needs depth >= 1, got {depth}")
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(depth):
            # No conv bias: the batch norm's shift replaces it.
            layers += [
                nn.Conv2d(c, out_channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
            ]
            c = out_channels
        layers.append(nn.MaxPool2d(2))
        super().__init__(*layers)
        self.out_channels = out_channels
