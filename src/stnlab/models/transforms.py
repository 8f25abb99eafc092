"""Transform families: a parameter vector -> a sampling grid for ``F.grid_sample``.

Coordinate conventions (every transform, the sampler and the visualisations use these):

- Coordinates are normalised: x runs from -1 (left edge) to +1 (right edge), y from
  -1 (top edge) to +1 (bottom edge) of the image, with ``align_corners=False``, so
  -1/+1 are the outer edges of the border pixels and the grid is resolution-free.
- A grid maps *output* positions to *input* positions (inverse warping): the ST's
  output pixel at p is the input sampled (bilinearly) at T(p). An affine
  theta = [[s, 0, 0], [0, s, 0]] with s < 1 therefore *zooms in* on the centre.
- ``params`` is (N, num_params); ``grid(params, size)`` returns (N, H, W, 2) with the
  last dimension ordered (x, y), for an output of ``size`` = (N, C, H, W).

A new family is one subclass here (``num_params``, ``identity()``, ``grid()``, and
``matrix()`` where it is affine) plus one YAML file in ``conf/transform/``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

ALIGN_CORNERS = False


def base_grid(n: int, h: int, w: int, device=None, dtype=None) -> torch.Tensor:
    """Normalised (x, y) coordinates of pixel centres: (N, H, W, 2), identical to an identity ``affine_grid``."""
    theta = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], device=device, dtype=dtype).expand(n, 2, 3)
    return F.affine_grid(theta, (n, 1, h, w), align_corners=ALIGN_CORNERS)


class Transform:
    """A family of spatial transforms with ``num_params`` parameters."""

    num_params: int
    name: str = "transform"

    def __init__(self, name: str | None = None):
        if name:
            self.name = name

    def identity(self) -> torch.Tensor:
        """The (num_params,) parameter vector of the identity transform (the regression bias at init)."""
        raise NotImplementedError

    def grid(self, params: torch.Tensor, size: torch.Size | tuple) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_params={self.num_params})"


class AffineFamily(Transform):
    """Transforms expressible as a 2x3 matrix theta: grid = theta @ [x, y, 1]."""

    def matrix(self, params: torch.Tensor) -> torch.Tensor:
        """(N, num_params) -> theta (N, 2, 3)."""
        raise NotImplementedError

    def grid(self, params, size):
        return F.affine_grid(self.matrix(params), list(size), align_corners=ALIGN_CORNERS)


class Affine(AffineFamily):
    """Full affine: 6 parameters, theta row-major."""

    num_params = 6
    name = "affine"

    def identity(self):
        return torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])

    def matrix(self, params):
        return params.view(-1, 2, 3)
