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
- ``map_points(params, points)`` applies the same mapping to any (N, P, 2) points
  (output -> input coordinates); ``grid`` is ``map_points`` on :func:`base_grid`. The
  visualisations map the output's border (x or y = +-1) through it to outline the
  sampled region in the input.

Families: :class:`Affine` (6), :class:`Similarity` (any subset of rotation, scale,
translation; 1 to 5 parameters), :class:`Projective` (8, a homography) and
:class:`ThinPlateSpline` (2 per control point).

A new family is one subclass here (``num_params``, ``identity()``, ``map_points()``,
and ``matrix()`` where it is affine) plus one YAML file in ``conf/transform/``.
"""

from __future__ import annotations

import torch

from stnlab.errors import ConfigError

ALIGN_CORNERS = False


def base_grid(n: int, h: int, w: int, device=None, dtype=None) -> torch.Tensor:
    """Normalised (x, y) coordinates of pixel centres: (N, H, W, 2), identical to an identity ``affine_grid``.

    Built in closed form rather than with ``F.affine_grid``, whose backward takes the output
    size as symbolic integers that ``torch.compile``'s inductor cannot lower.
    """
    xs = (torch.arange(w, device=device, dtype=dtype) * 2 + 1) / w - 1
    ys = (torch.arange(h, device=device, dtype=dtype) * 2 + 1) / h - 1
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)
    return grid.expand(n, h, w, 2)


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

    def map_points(self, params: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Output -> input coordinates: params (N, num_params), points (N, P, 2) or (1, P, 2)
        (the same points for every sample) -> (N, P, 2), (x, y) last."""
        raise NotImplementedError

    def grid(self, params: torch.Tensor, size: torch.Size | tuple) -> torch.Tensor:
        """The sampling grid (N, H, W, 2) for an output of ``size`` = (N, C, H, W)."""
        _, _, h, w = size
        points = base_grid(1, h, w, device=params.device, dtype=params.dtype).reshape(1, h * w, 2)
        return self.map_points(params, points).view(-1, h, w, 2)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_params={self.num_params})"


class AffineFamily(Transform):
    """Transforms expressible as a 2x3 matrix theta: grid = theta @ [x, y, 1]."""

    def matrix(self, params: torch.Tensor) -> torch.Tensor:
        """(N, num_params) -> theta (N, 2, 3)."""
        raise NotImplementedError

    def map_points(self, params, points):
        theta = self.matrix(params)
        return points @ theta[:, :, :2].transpose(1, 2) + theta[:, None, :, 2]


class Affine(AffineFamily):
    """Full affine: 6 parameters, theta row-major."""

    num_params = 6
    name = "affine"

    def identity(self):
        return torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])

    def matrix(self, params):
        return params.view(-1, 2, 3)


class Similarity(AffineFamily):
    """Any non-empty subset of rotation, scale and translation, composed as

    theta = [[sx cos a, -sy sin a, tx], [sx sin a, sy cos a, ty]]

    with a in radians, sx = sy = s unless ``anisotropic``. ``params`` holds, in this
    order, only the enabled parts: ``a`` (rotation), ``s`` or ``sx, sy`` (scale), ``tx, ty``
    (translation); the disabled parts stay at a = 0, s = 1, t = 0, so a restricted
    family cannot express what it excludes (translation-only never scales).
    Identity: a = 0, s = 1, t = 0. Scale s < 1 zooms in (the grid maps output to input).
    """

    def __init__(self, rotation: bool = True, scale: bool = True, translation: bool = True,
                 anisotropic: bool = False, name: str | None = None):
        if not (rotation or scale or translation):
            raise ConfigError("Similarity transform with rotation, scale and translation all false; enable at least one")
        self.rotation, self.scale, self.translation = rotation, scale, translation
        self.anisotropic = anisotropic and scale
        self.num_params = int(rotation) + (2 if self.anisotropic else int(scale)) + 2 * int(translation)
        parts = [p for p, on in (("rotation", rotation), ("scale", scale), ("translation", translation)) if on]
        self.name = "_".join(parts)
        super().__init__(name)

    def identity(self):
        ident = [0.0] * self.rotation + [1.0] * (self.num_params - self.rotation - 2 * self.translation)
        return torch.tensor(ident + [0.0, 0.0] * self.translation)

    def matrix(self, params):
        params = params.view(-1, self.num_params)
        n, i = params.shape[0], 0
        zeros, ones = params.new_zeros(n), params.new_ones(n)
        angle = zeros
        if self.rotation:
            angle, i = params[:, 0], 1
        sx = sy = ones
        if self.scale:
            sx, i = params[:, i], i + 1
            sy = sx
            if self.anisotropic:
                sy, i = params[:, i], i + 1
        tx = ty = zeros
        if self.translation:
            tx, ty = params[:, i], params[:, i + 1]
        cos, sin = torch.cos(angle), torch.sin(angle)
        row0 = torch.stack([sx * cos, -sy * sin, tx], dim=1)
        row1 = torch.stack([sx * sin, sy * cos, ty], dim=1)
        return torch.stack([row0, row1], dim=1)

    def __repr__(self):
        return f"Similarity({self.name}, anisotropic={self.anisotropic}, num_params={self.num_params})"


def apply_homography(h: torch.Tensor, points: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Points (N or 1, P, 2) through 3x3 matrices (N, 3, 3) in homogeneous coordinates -> (N, P, 2).

    The divide is safe: a homogeneous w with |w| < eps becomes +-eps (keeping its sign),
    so points near the horizon land far away instead of at inf/nan.
    """
    uvw = points @ h[:, :, :2].transpose(1, 2) + h[:, None, :, 2]
    w = uvw[..., 2:]
    w = torch.where(w.abs() < eps, torch.where(w < 0, -eps, eps), w)
    return uvw[..., :2] / w


class Projective(Transform):
    """A homography, 8 parameters: H = [[h0, h1, h2], [h3, h4, h5], [h6, h7, 1]].

    An output point (x, y) samples the input at ((h0 x + h1 y + h2) / w, (h3 x + h4 y + h5) / w)
    with w = h6 x + h7 y + 1 (safe divide, see :func:`apply_homography`). With h6 = h7 = 0
    it is the affine theta = [[h0, h1, h2], [h3, h4, h5]]. Identity: [1, 0, 0, 0, 1, 0, 0, 0].
    """

    num_params = 8
    name = "projective"

    def identity(self):
        return torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])

    def homography(self, params: torch.Tensor) -> torch.Tensor:
        """(N, 8) -> H (N, 3, 3)."""
        params = params.view(-1, 8)
        return torch.cat([params, params.new_ones(params.shape[0], 1)], dim=1).view(-1, 3, 3)

    def map_points(self, params, points):
        return apply_homography(self.homography(params), points)


def _tps_kernel(r2: torch.Tensor) -> torch.Tensor:
    """The thin-plate radial basis U(r) = r^2 log r^2, with U(0) = 0 (finite gradients at 0)."""
    return r2 * torch.log(r2.clamp_min(1e-12))


class ThinPlateSpline(Transform):
    """A thin-plate spline through a ``grid_size`` x ``grid_size`` lattice of control points.

    The control points p_i sit on a regular lattice spanning [-1, 1]^2 of the *output*;
    ``params`` are their (x, y) positions q_i in the *input* (N, 2 K), K = grid_size^2,
    ordered row by row (y, then x) as (x0, y0, x1, y1, ...). The mapping is the TPS
    interpolant f with f(p_i) = q_i: f(p) = A [1, x, y] + sum_i w_i U(|p - p_i|), whose
    coefficients are linear in q (one precomputed (K+3, K) matrix). Identity: q_i = p_i,
    the undisplaced control points. As in the STN paper (Jaderberg et al., 2015).
    """

    name = "tps"

    def __init__(self, grid_size: int = 4, name: str | None = None):
        if grid_size < 2:
            raise ConfigError(f"transform.grid_size={grid_size} is too small; a thin-plate spline needs at least 2 (e.g. 4)")
        super().__init__(name)
        self.grid_size = grid_size
        lin = torch.linspace(-1.0, 1.0, grid_size, dtype=torch.float64)
        ys, xs = torch.meshgrid(lin, lin, indexing="ij")
        self.control = torch.stack([xs.flatten(), ys.flatten()], dim=1)  # (K, 2) output positions
        k = len(self.control)
        self.num_params = 2 * k
        # Solve [[U(P, P), [1 P]], [[1 P]^T, 0]] [w; a] = [q; 0] once: coefficients = solve[:, :K] @ q.
        ones_p = torch.cat([torch.ones(k, 1, dtype=torch.float64), self.control], dim=1)  # (K, 3)
        system = torch.zeros(k + 3, k + 3, dtype=torch.float64)
        system[:k, :k] = _tps_kernel(torch.cdist(self.control, self.control).square())
        system[:k, k:] = ones_p
        system[k:, :k] = ones_p.T
        self._coef_from_q = torch.linalg.inv(system)[:, :k]  # (K+3, K)
        self._cache: dict = {}

    def identity(self):
        return self.control.flatten().float()

    def _buffers(self, like: torch.Tensor):
        key = (like.device, like.dtype)
        if key not in self._cache:
            self._cache[key] = (self._coef_from_q.to(like.device, like.dtype), self.control.to(like.device, like.dtype))
        return self._cache[key]

    def map_points(self, params, points):
        coef_from_q, control = self._buffers(params)
        # Interpolate the displacements q - p and add them to p: the same map (a TPS reproduces
        # the identity exactly), but the identity parameters give exactly the identity in float32.
        displacement = params.view(-1, self.num_params // 2, 2) - control
        coef = coef_from_q @ displacement  # (N, K+3, 2): K radial weights, then the affine part (1, x, y)
        k = control.shape[0]
        basis = _tps_kernel((points[..., None, :] - control).square().sum(-1))  # (N, P, K)
        affine = torch.cat([torch.ones_like(points[..., :1]), points], dim=-1)  # (N, P, 3)
        return points + basis @ coef[:, :k] + affine @ coef[:, k:]

    def __repr__(self):
        return f"ThinPlateSpline(grid_size={self.grid_size}, num_params={self.num_params})"
