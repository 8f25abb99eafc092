"""Transform families: a parameter vector -> a sampling grid for ``F.grid_sample``.

Coordinates, matrices and grids follow :mod:`stnlab.geometry` (normalised, ``align_corners=False``,
output -> input). Per family: ``params`` is (N, num_params); ``map_points(params, points)`` maps (N or 1,
P, 2) output points to input points; ``grid(params, size)`` is ``map_points`` on every pixel centre of an
output of ``size`` = (N, C, H, W), (N, H, W, 2) with (x, y) last. The visualisations map the output's
border through ``map_points`` to outline the sampled region in the input.

Families: :class:`Affine` (6), :class:`RotationScaleTranslation` (any subset of rotation, scale,
translation; 1 to 5 parameters), :class:`Projective` (8, a homography) and :class:`ThinPlateSpline`
(2 per control point).

A new family is one subclass here (``num_params``, ``identity()``, ``map_points()``,
and ``matrix()`` where it is affine) plus one YAML file in ``conf/transform/``.
"""

from __future__ import annotations

import torch

from stnlab.errors import ConfigError
from stnlab.geometry import affine_matrix, apply_homography, base_grid, map_grid, transform_points

# apply_homography and base_grid stay importable from here, where they used to live.
__all__ = [
    "Transform",
    "AffineFamily",
    "Affine",
    "RotationScaleTranslation",
    "Projective",
    "ThinPlateSpline",
    "apply_homography",
    "base_grid",
]


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
        return map_grid(lambda points: self.map_points(params, points), size, params.device, params.dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_params={self.num_params})"


class AffineFamily(Transform):
    """Transforms expressible as a 2x3 matrix theta: grid = theta @ [x, y, 1]."""

    def matrix(self, params: torch.Tensor) -> torch.Tensor:
        """(N, num_params) -> theta (N, 2, 3)."""
        raise NotImplementedError

    def map_points(self, params, points):
        return transform_points(self.matrix(params), points)


class Affine(AffineFamily):
    """Full affine: 6 parameters, theta row-major."""

    num_params = 6
    name = "affine"

    def identity(self):
        return torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])

    def matrix(self, params):
        return params.view(-1, 2, 3)


class RotationScaleTranslation(AffineFamily):
    """Any non-empty subset of rotation, scale (isotropic or not) and translation, composed as

    theta = [[sx cos a, -sy sin a, tx], [sx sin a, sy cos a, ty]]  (:func:`stnlab.geometry.affine_matrix`)

    with a in radians, sx = sy = s unless ``anisotropic``. ``params`` holds, in this
    order, only the enabled parts: ``a`` (rotation), ``s`` or ``sx, sy`` (scale), ``tx, ty``
    (translation); the disabled parts stay at a = 0, s = 1, t = 0, so a restricted
    family cannot express what it excludes (translation-only never scales).
    Identity: a = 0, s = 1, t = 0. Scale s < 1 zooms in (the grid maps output to input).
    """

    def __init__(
        self,
        rotation: bool = True,
        scale: bool = True,
        translation: bool = True,
        anisotropic: bool = False,
        name: str | None = None,
    ):
        if not (rotation or scale or translation):
            raise ConfigError("transform: rotation, scale and translation are all false; enable at least one")
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
        n_scale = self.num_params - self.rotation - 2 * self.translation
        angle, scale, translation = params.split([int(self.rotation), n_scale, 2 * self.translation], dim=1)
        return affine_matrix(
            angle[:, 0] if self.rotation else None,
            (scale if self.anisotropic else scale[:, 0]) if self.scale else None,
            translation if self.translation else None,
        )

    def __repr__(self):
        return f"RotationScaleTranslation({self.name}, anisotropic={self.anisotropic}, num_params={self.num_params})"


# The former name: older run configs (and so checkpoints) name it in their transform's _target_.
Similarity = RotationScaleTranslation


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
            raise ConfigError(
                f"transform.grid_size={grid_size} is too small; a thin-plate spline needs at least 2 (e.g. 4)"
            )
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
