"""A spatial transformer: localisation net -> regression -> transform grid -> bilinear sampler."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from stnlab.geometry import sample
from stnlab.models.transforms import Affine, Transform


class SpatialTransformer(nn.Module):
    """(N, C, H, W) -> (N, C, H, W), resampled where the localisation net looks.

    Args:
        in_channels, in_size: shape of the tensor it transforms.
        locnet: a factory ``(in_channels, in_size) -> nn.Module`` with ``out_features``.
        transform: the transform family (:mod:`stnlab.models.transforms`; conventions in :mod:`stnlab.geometry`).
    """

    def __init__(
        self, in_channels: int, in_size: int, locnet: Callable[..., nn.Module], transform: Transform | None = None
    ):
        super().__init__()
        self.transform = transform if transform is not None else Affine()
        self.locnet = locnet(in_channels=in_channels, in_size=in_size)
        self.regressor = nn.Linear(self.locnet.out_features, self.transform.num_params)
        # Start as the identity (STN paper, A.3): the classifier first sees undistorted inputs.
        nn.init.zeros_(self.regressor.weight)
        with torch.no_grad():
            self.regressor.bias.copy_(self.transform.identity())

    def params(self, x: torch.Tensor) -> torch.Tensor:
        return self.regressor(self.locnet(x))

    def warp(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        return sample(x, self.transform.grid(params.float(), x.shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.warp(x, self.params(x))
