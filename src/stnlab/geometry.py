"""Plane geometry: the coordinate convention, 2x3 and 3x3 matrices, sampling grids and warps.

The bottom layer (no stnlab imports). The ST transform families (:mod:`stnlab.models.transforms`), the
jitter augmentation, the synthetic data, the robustness distortions and the ST drawings all use it.

Convention, for every coordinate in stnlab:

- Coordinates are normalised: x runs from -1 (left edge) to +1 (right edge) of the image, y from -1
  (top edge) to +1 (bottom edge), with ``align_corners=False``: -1/+1 are the outer edges of the border
  pixels, pixel i of W has its centre at (2 i + 1) / W - 1, and coordinates do not depend on the
  resolution. A point is a (..., 2) tensor ordered (x, y).
- A matrix maps *output* positions to *input* sampling positions (inverse warping): the warped image at p
  is the input sampled (bilinearly) at M(p). Hence theta = diag(s, s) with s < 1 *zooms in* (the content
  grows by 1/s), a translation t moves the content by -t, and a rotation by a > 0 (y points down) turns
  the content by a counter-clockwise on screen.
- An affine ``theta`` is (N, 2, 3) = [A | t], p -> A p + t; a homography ``h`` is (N, 3, 3),
  p -> (h [p; 1])_xy / (h [p; 1])_w. Functions that take a ``matrix`` accept either.
- Batch shapes: angles (N,) in radians, scales (N,) or (N, 2) for (sx, sy), translations (N, 2); points
  (N, P, 2), or (1, P, 2) for the same points in every sample; grids (N, H, W, 2); images (N, C, H, W).
- Composition is of point maps: ``compose(a, b)`` is p -> a(b(p)). Warping by ``b`` and then the result by
  ``a`` samples the input at b(a(p)), i.e. it equals one warp by ``compose(b, a)`` (up to resampling).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

ALIGN_CORNERS = False


def affine_matrix(
    angle: torch.Tensor | None = None, scale: torch.Tensor | None = None, translation: torch.Tensor | None = None
) -> torch.Tensor:
    """theta (N, 2, 3) of p -> R(angle) diag(sx, sy) p + translation, the parts not given being the identity:

    theta = [[sx cos a, -sy sin a, tx], [sx sin a, sy cos a, ty]].

    ``scale`` (N,) is isotropic, (N, 2) is (sx, sy). Batch size, dtype and device come from the parts given.
    """
    given = [p for p in (angle, scale, translation) if p is not None]
    if not given:
        raise ValueError("affine_matrix needs at least one of angle, scale, translation")
    zeros = given[0].new_zeros(given[0].shape[0])
    ones = zeros + 1
    cos, sin = (torch.cos(angle), torch.sin(angle)) if angle is not None else (ones, zeros)
    if scale is None:
        sx = sy = ones
    else:
        sx, sy = scale.unbind(1) if scale.dim() == 2 else (scale, scale)
    tx, ty = translation.unbind(1) if translation is not None else (zeros, zeros)
    row0 = torch.stack([sx * cos, -sy * sin, tx], dim=1)
    row1 = torch.stack([sx * sin, sy * cos, ty], dim=1)
    return torch.stack([row0, row1], dim=1)


def _is_affine(matrix: torch.Tensor) -> bool:
    if matrix.shape[-2:] == (2, 3):
        return True
    if matrix.shape[-2:] == (3, 3):
        return False
    raise ValueError(f"expected (N, 2, 3) affine or (N, 3, 3) projective matrices, got shape {tuple(matrix.shape)}")


def homogeneous(matrix: torch.Tensor) -> torch.Tensor:
    """(N, 2, 3) theta -> (N, 3, 3) with last row (0, 0, 1); a (N, 3, 3) matrix is returned as it is."""
    if not _is_affine(matrix):
        return matrix
    last = matrix.new_tensor([0.0, 0.0, 1.0]).expand(*matrix.shape[:-2], 1, 3)
    return torch.cat([matrix, last], dim=-2)


def compose(*matrices: torch.Tensor) -> torch.Tensor:
    """The point map p -> m0(m1(...(mk(p)))); (N, 2, 3) if every matrix is affine, else (N, 3, 3).

    Batch dimensions broadcast (a (1, 2, 3) matrix applies to every sample)."""
    out = homogeneous(matrices[0])
    for m in matrices[1:]:
        out = out @ homogeneous(m)
    return out[..., :2, :] if all(_is_affine(m) for m in matrices) else out


def invert(matrix: torch.Tensor) -> torch.Tensor:
    """The inverse map, of the same kind: (N, 2, 3) -> (N, 2, 3), (N, 3, 3) -> (N, 3, 3)."""
    if not _is_affine(matrix):
        return torch.linalg.inv(matrix)
    a_inv = torch.linalg.inv(matrix[..., :2])
    return torch.cat([a_inv, -a_inv @ matrix[..., 2:]], dim=-1)


def apply_homography(h: torch.Tensor, points: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Points (N or 1, P, 2) through 3x3 matrices (N, 3, 3) in homogeneous coordinates -> (N, P, 2).

    The divide is safe: a homogeneous w with |w| < eps becomes +-eps (keeping its sign),
    so points near the horizon land far away instead of at inf/nan.
    """
    uvw = points @ h[:, :, :2].transpose(1, 2) + h[:, None, :, 2]
    w = uvw[..., 2:]
    w = torch.where(w.abs() < eps, torch.where(w < 0, -eps, eps), w)
    return uvw[..., :2] / w


def transform_points(matrix: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Points (N or 1, P, 2) through (N, 2, 3) or (N, 3, 3) matrices -> (N, P, 2)."""
    if not _is_affine(matrix):
        return apply_homography(matrix, points)
    return points @ matrix[:, :, :2].transpose(1, 2) + matrix[:, None, :, 2]


def base_grid(n: int, h: int, w: int, device=None, dtype=None) -> torch.Tensor:
    """Normalised (x, y) coordinates of pixel centres: (N, H, W, 2), identical to an identity ``affine_grid``.

    Built in closed form rather than with ``F.affine_grid``, whose backward takes the output
    size as symbolic integers that ``torch.compile``'s inductor cannot lower.
    """
    xs = (torch.arange(w, device=device, dtype=dtype) * 2 + 1) / w - 1
    ys = (torch.arange(h, device=device, dtype=dtype) * 2 + 1) / h - 1
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)
    return grid.expand(n, h, w, 2)


def map_grid(
    map_points: Callable[[torch.Tensor], torch.Tensor], size: tuple[int, ...], device=None, dtype=None
) -> torch.Tensor:
    """The sampling grid (N, H, W, 2) of any output -> input point map ``(1, P, 2) -> (N, P, 2)``.

    ``size`` ends with (H, W), e.g. an output's (N, C, H, W)."""
    h, w = size[-2:]
    points = base_grid(1, h, w, device=device, dtype=dtype).reshape(1, h * w, 2)
    return map_points(points).view(-1, h, w, 2)


def sampling_grid(matrix: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """The sampling grid (N, H, W, 2) of (N, 2, 3) or (N, 3, 3) matrices for an output of ``size`` (..., H, W)."""
    return map_grid(lambda p: transform_points(matrix, p), size, matrix.device, matrix.dtype)


def sample(images: torch.Tensor, grid: torch.Tensor, padding_mode: str = "zeros") -> torch.Tensor:
    """Images (N, C, H, W) sampled bilinearly at grid (N, H', W', 2) -> (N, C, H', W'), in the images' dtype.

    ``padding_mode``: what lies outside the input, as ``F.grid_sample`` (zeros | border | reflection)."""
    return F.grid_sample(
        images, grid.to(images.dtype), mode="bilinear", padding_mode=padding_mode, align_corners=ALIGN_CORNERS
    )


def warp(
    images: torch.Tensor, matrix: torch.Tensor, size: tuple[int, int] | None = None, padding_mode: str = "zeros"
) -> torch.Tensor:
    """Images (N, C, H, W) warped by (N, 2, 3) affine or (N, 3, 3) projective matrices (output -> input).

    ``size``: the output's (H', W'); by default the input's."""
    return sample(images, sampling_grid(matrix, size or images.shape[-2:]), padding_mode)


def border_points(per_side: int = 16) -> torch.Tensor:
    """(4 * per_side + 1, 2) points along the border of [-1, 1]^2, clockwise from the top-left, closed."""
    t = torch.linspace(-1.0, 1.0, per_side + 1)[:-1]
    one = torch.ones_like(t)
    sides = [torch.stack(s, 1) for s in ((t, -one), (one, t), (-t, one), (-one, -t))]
    pts = torch.cat(sides)
    return torch.cat([pts, pts[:1]])


def map_box(matrix: torch.Tensor, per_side: int = 1) -> torch.Tensor:
    """The output's border through ``matrix``: (N, 4 * per_side + 1, 2), the closed outline of the region
    the warp samples in the input (its four corners and, with ``per_side`` > 1, points between them)."""
    points = border_points(per_side).to(device=matrix.device, dtype=matrix.dtype)
    return transform_points(matrix, points[None])


def to_pixels(points: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Normalised (..., 2) points -> pixel coordinates (x, y) of an image of ``size`` (H, W), with pixel
    (i, j)'s centre at (j, i): -1/+1 map to -0.5 and W - 0.5 (H - 0.5), the outer edges."""
    h, w = size
    return (points + 1) / 2 * points.new_tensor([w, h]) - 0.5
