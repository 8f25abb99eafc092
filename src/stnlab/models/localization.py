"""Localisation networks: (N, C, H, W) features -> (N, out_features) for the regression layer.

The regression layer itself (zero weights, identity bias) belongs to the
spatial transformer, which knows its transform's parameter count.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from stnlab.models.blocks import ConvBlock


class ConvLocNet(nn.Module):
    """The reference's conv localisation net: max-pool, two conv blocks, FC.

    ``widths`` = (conv1, conv2, fc), e.g. 200,300,200 for the input ST of the
    Moodstocks network. Each conv block is 5x5 conv (padding 2), ReLU, max-pool.
    """

    def __init__(
        self,
        in_channels: int,
        in_size: int,
        widths: Sequence[int] = (200, 300, 200),
        kernel: int = 5,
        padding: int = 2,
        pool_input: bool = True,
    ):
        super().__init__()
        if len(widths) < 2:
            raise ValueError(f"ConvLocNet needs conv widths and an FC width, got {list(widths)}")
        *convs, fc = widths
        layers: list[nn.Module] = [nn.MaxPool2d(2)] if pool_input else []
        size = in_size // 2 if pool_input else in_size
        c = in_channels
        for w in convs:
            out = ConvBlock.out_size(size, kernel, padding)
            if out < 1:
                raise ValueError(
                    f"localisation net input {in_size}x{in_size} is too small for {len(convs)} conv blocks"
                )
            layers.append(ConvBlock(c, w, kernel, padding))
            c, size = w, out
        layers += [nn.Flatten(), nn.Linear(c * size * size, fc), nn.ReLU(inplace=True)]
        self.net = nn.Sequential(*layers)
        self.out_features = fc

    def forward(self, x):
        return self.net(x)


class FCLocNet(nn.Module):
    """A fully connected localisation net: optional 2x2 max-pool, then an MLP of ``widths``."""

    def __init__(self, in_channels: int, in_size: int, widths: Sequence[int] = (300, 200), pool_input: bool = True):
        super().__init__()
        size = in_size // 2 if pool_input else in_size
        layers: list[nn.Module] = ([nn.MaxPool2d(2)] if pool_input else []) + [nn.Flatten()]
        n = in_channels * size * size
        for w in widths:
            layers += [nn.Linear(n, w), nn.ReLU(inplace=True)]
            n = w
        self.net = nn.Sequential(*layers)
        self.out_features = n

    def forward(self, x):
        return self.net(x)
