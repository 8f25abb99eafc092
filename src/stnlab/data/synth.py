"""Synthetic traffic-sign-like data, drawn in memory from a seed: the offline and test data of stnlab.

43 classes of simple pictograms (``CLASSES``): a shape (circle, triangle, square, diamond,
octagon), a colour scheme (fill, border, glyph colours) and a glyph (arrows, bars, cross,
...). Each image is its class's pictogram under a random distortion (rotation, scale,
translation, perspective) pasted on a cluttered background (smooth colour noise and
stripes), with random brightness and pixel noise.

The ground truth of each distortion is kept: ``split.warps`` (N, 3, 3) maps *image*
coordinates to *canonical* coordinates (the coordinates of the undistorted sign, centred,
``sign_extent`` of the half-size), in the normalised convention of
:mod:`stnlab.geometry`: ``apply_homography(warps, p)`` is where image point p
lies on the canonical sign. An ST whose map is T brings the image to canonical pose when
``apply_homography(warps, T(q)) == q`` for every output point q (see :func:`alignment_error`).

Shapes: ``images`` uint8 (N, 3, S, S), ``labels`` int64 (N,), ``warps`` float32 (N, 3, 3).
"""

from __future__ import annotations

import functools
import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from stnlab.config.schema import check_classes, check_data
from stnlab.data.classes import NUM_CLASSES
from stnlab.data.gtsrb import Split
from stnlab.data.tensors import TensorDataModule
from stnlab.geometry import affine_matrix, apply_homography, base_grid, compose, invert, sample

# (fill, border, glyph) RGB colours.
SCHEMES = {
    "red_ring": ((245, 245, 245), (200, 20, 30), (20, 20, 20)),
    "blue": ((20, 70, 190), (240, 240, 240), (245, 245, 245)),
    "red": ((200, 20, 30), (240, 240, 240), (245, 245, 245)),
    "yellow": ((250, 200, 20), (20, 20, 20), (20, 20, 20)),
    "white": ((245, 245, 245), (20, 20, 20), (20, 20, 20)),
}
_SHAPE_POLYGONS = {
    "triangle": [(0.0, -1.0), (0.866, 0.5), (-0.866, 0.5)],
    "square": [(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)],
    "diamond": [(0.0, -1.0), (1.0, 0.0), (0.0, 1.0), (-1.0, 0.0)],
    "octagon": [(math.cos(math.pi / 8 + k * math.pi / 4), math.sin(math.pi / 8 + k * math.pi / 4)) for k in range(8)],
}
# Radius of the circle inside each shape: glyphs are scaled to fit it.
_INRADIUS = {"circle": 1.0, "triangle": 0.65, "square": 0.85, "diamond": 0.707, "octagon": 0.92}
_ARROW_UP = [(0, -1), (0.7, -0.2), (0.25, -0.2), (0.25, 1), (-0.25, 1), (-0.25, -0.2), (-0.7, -0.2)]
_BAR = [(-0.8, -0.2), (0.8, -0.2), (0.8, 0.2), (-0.8, 0.2)]


def _rotate(poly, angle_deg: float):
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    return [(c * x - s * y, s * x + c * y) for x, y in poly]


_GLYPH_POLYGONS = {
    "arrow_up": [_ARROW_UP],
    "arrow_left": [_rotate(_ARROW_UP, -90)],
    "arrow_right": [_rotate(_ARROW_UP, 90)],
    "bar": [_BAR],
    "cross": [_rotate(_BAR, 45), _rotate(_BAR, -45)],
    "exclamation": [[(-0.15, -0.9), (0.15, -0.9), (0.15, 0.35), (-0.15, 0.35)]],
    "two_bars": [[(x - 0.15, -0.8), (x + 0.15, -0.8), (x + 0.15, 0.8), (x - 0.15, 0.8)] for x in (-0.4, 0.4)],
    "chevron": [[(0.5, -0.9), (-0.45, 0.0), (0.5, 0.9), (0.5, 0.45), (0.05, 0.0), (0.5, -0.45)]],
    "corner": [[(-0.7, -0.9), (-0.3, -0.9), (-0.3, 0.5), (0.7, 0.5), (0.7, 0.9), (-0.7, 0.9)]],
    "ring": [],
}
# The order of these names fixes the classes below: a shape per _INRADIUS key, a glyph per _GLYPH_POLYGONS key.
SHAPES, GLYPHS = tuple(_INRADIUS), tuple(_GLYPH_POLYGONS)
# A fixed draw of 43 distinct (shape, scheme, glyph) triples: the classes never depend on the data seed.
CLASSES: tuple[tuple[str, str, str], ...] = tuple(
    random.Random(0).sample(list(itertools.product(SHAPES, SCHEMES, GLYPHS)), NUM_CLASSES)
)
# What predict, serve and the reports call them ("circle red ring arrow up"), saved in the checkpoints.
CLASS_NAMES = tuple(" ".join(part.replace("_", " ") for part in triple) for triple in CLASSES)


def _draw_pictogram(shape: str, scheme: str, glyph: str, size: int) -> Image.Image:
    """One RGBA pictogram spanning the whole ``size`` x ``size`` square (alpha = the sign's mask)."""
    fill, border, ink = SCHEMES[scheme]
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)

    def px(poly, scale=1.0):
        return [((x * scale + 1) * size / 2, (y * scale + 1) * size / 2) for x, y in poly]

    def circle(cx, cy, r, colour):
        draw.ellipse(
            [(cx - r + 1) * size / 2, (cy - r + 1) * size / 2, (cx + r + 1) * size / 2, (cy + r + 1) * size / 2],
            fill=colour + (255,),
        )

    for scale, colour in ((1.0, border), (0.78, fill)):
        if shape == "circle":
            circle(0, 0, scale, colour)
        else:
            draw.polygon(px(_SHAPE_POLYGONS[shape], scale), fill=colour + (255,))
    g = 0.55 * _INRADIUS[shape]
    for poly in _GLYPH_POLYGONS[glyph]:
        draw.polygon(px(poly, g), fill=ink + (255,))
    if glyph == "exclamation":
        circle(0, 0.7 * g, 0.18 * g, ink)
    elif glyph == "ring":
        circle(0, 0, 0.8 * g, ink)
        circle(0, 0, 0.5 * g, fill)
    return img


@functools.lru_cache(maxsize=4)
def templates(size: int) -> torch.Tensor:
    """The 43 class pictograms as float RGBA in [0, 1]: (43, 4, size, size), drawn 4x larger and downsampled."""
    out = []
    for shape, scheme, glyph in CLASSES:
        img = _draw_pictogram(shape, scheme, glyph, 4 * size).resize((size, size), Image.Resampling.LANCZOS)
        out.append(torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1))
    return torch.stack(out)


def random_warps(
    n: int,
    gen: torch.Generator,
    rotation: float = 15.0,
    scale: Sequence[float] = (0.8, 1.1),
    translation: float = 0.1,
    perspective: float = 0.0,
) -> torch.Tensor:
    """(n, 3, 3) image -> canonical maps: the inverses of D = translate . rotate . scale . perspective.

    D places the canonical sign in the image: rotated by up to +-``rotation`` degrees,
    scaled by U(``scale``), shifted by up to +-``translation`` of the image size per axis,
    and tilted by a homography whose last row is (px, py, 1), |px|, |py| <= ``perspective``.
    """
    u = torch.rand(n, 6, generator=gen) * 2 - 1  # U(-1, 1)
    a = u[:, 0] * math.radians(rotation)
    lo, hi = scale
    s = lo + (u[:, 1] + 1) / 2 * (hi - lo)
    t = u[:, 2:4] * 2 * translation  # normalised coordinates span 2 per image size
    tilt = torch.eye(3).repeat(n, 1, 1)
    tilt[:, 2, :2] = u[:, 4:6] * perspective
    g = invert(compose(affine_matrix(a, s, t), tilt))
    return g / g[:, 2:, 2:]


def backgrounds(n: int, size: int, gen: torch.Generator, clutter: float = 0.5) -> torch.Tensor:
    """(n, 3, size, size) float backgrounds in [0, 1]: a random base colour, smooth colour noise and
    a few random stripes, both weighted by ``clutter`` (0 = flat colour)."""
    base = torch.rand(n, 3, 1, 1, generator=gen) * 0.6 + 0.2
    blobs = F.interpolate(
        torch.rand(n, 3, 4, 4, generator=gen), size=(size, size), mode="bicubic", align_corners=False
    ).clamp(0, 1)
    bg = base * (1 - clutter) + blobs * clutter
    xy = base_grid(n, size, size)  # (n, S, S, 2)
    lines = 3
    angle = torch.rand(n, lines, generator=gen) * math.pi
    offset = torch.rand(n, lines, generator=gen) * 2 - 1
    normal = torch.stack([torch.cos(angle), torch.sin(angle)], -1)  # (n, L, 2)
    dist = (torch.einsum("nhwc,nlc->nlhw", xy, normal) - offset[..., None, None]).abs()
    on = (dist < 0.06).float() * (torch.rand(n, lines, 1, 1, generator=gen) < clutter).float()
    colour = torch.rand(n, lines, 3, generator=gen)
    stripes = torch.einsum("nlhw,nlc->nchw", on, colour)
    mask = on.amax(1, keepdim=True)
    return bg * (1 - mask) + stripes.clamp(0, 1) * mask


def render(
    labels: torch.Tensor,
    warps: torch.Tensor,
    size: int,
    gen: torch.Generator,
    clutter: float = 0.5,
    sign_extent: float = 0.75,
    noise: float = 0.03,
    chunk: int = 512,
) -> torch.Tensor:
    """uint8 images (N, 3, size, size): each label's pictogram seen through its warp, on clutter.

    The canonical sign spans +-``sign_extent`` of the normalised image: a canonical point c
    shows template point c / sign_extent.
    """
    tmpl = templates(max(32, 2 * size))
    out = torch.empty(len(labels), 3, size, size, dtype=torch.uint8)
    pts = base_grid(1, size, size).reshape(1, size * size, 2)
    for i in range(0, len(labels), chunk):
        lab, g = labels[i : i + chunk], warps[i : i + chunk]
        n = len(lab)
        grid = (apply_homography(g, pts.expand(n, -1, -1)) / sign_extent).reshape(n, size, size, 2)
        sign = sample(tmpl[lab], grid)
        rgb, alpha = sign[:, :3], sign[:, 3:]
        img = rgb * alpha + backgrounds(n, size, gen, clutter) * (1 - alpha)
        img = img * (0.6 + 0.6 * torch.rand(n, 1, 1, 1, generator=gen))  # brightness
        img = img + noise * torch.randn(img.shape, generator=gen)
        out[i : i + chunk] = img.clamp(0, 1).mul(255).round().to(torch.uint8)
    return out


def alignment_error(warps: torch.Tensor, st_points: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Per-image mean distance (normalised units) between output points ``points`` (N, P, 2) and where
    they land on the canonical sign after the ST's map (``st_points`` = T(points)) and the image's warp.

    0 means the ST output is the sign in canonical pose; the identity ST scores the distortion itself.
    """
    return (apply_homography(warps, st_points) - points).norm(dim=-1).mean(-1)


@dataclass
class SynthSplit(Split):
    """A :class:`Split` with the ground-truth image -> canonical warps (N, 3, 3)."""

    warps: torch.Tensor = None  # type: ignore[assignment]


class SynthDataModule(TensorDataModule):
    """Procedural traffic-sign-like data (see the module docstring), made in memory from ``seed``; each split
    draws from its own stream. The options are described in conf/data/synth.yaml; ``num_classes`` draws only the
    first classes of the 43 (an easier task for quick trials)."""

    name = "synth"

    def __init__(
        self,
        num_train: int = 4000,
        num_val: int = 500,
        num_test: int = 500,
        image_size: int = 32,
        rotation: float = 15.0,
        scale: Sequence[float] = (0.8, 1.1),
        translation: float = 0.1,
        perspective: float = 0.05,
        clutter: float = 0.5,
        sign_extent: float = 0.75,
        num_classes: int = NUM_CLASSES,
        seed: int = 0,
        batch_size: int = 50,
        eval_batch_size: int = 500,
        num_workers: int = 0,
        name: str = "synth",
    ):
        check_classes(num_classes, least=1, most=NUM_CLASSES)
        kept = max(num_classes, 2)
        super().__init__(
            batch_size, eval_batch_size, num_workers, image_size, name, num_classes=kept, class_names=CLASS_NAMES[:kept]
        )
        check_data(dict(num_train=num_train, num_val=num_val, num_test=num_test, scale=scale, clutter=clutter))
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.distortion = dict(rotation=rotation, scale=tuple(scale), translation=translation, perspective=perspective)
        self.clutter, self.sign_extent, self.seed = clutter, sign_extent, seed
        self.drawn_classes = num_classes

    def make_split(self, split: str) -> SynthSplit:
        n = self.sizes[split]
        gen = torch.Generator().manual_seed(self.seed * 1000 + ("train", "val", "test").index(split))
        labels = torch.arange(n) % self.drawn_classes
        labels = labels[torch.randperm(n, generator=gen)]
        warps = random_warps(n, gen, **self.distortion)
        images = render(labels, warps, self.image_size, gen, self.clutter, self.sign_extent)
        return SynthSplit(images, labels, torch.arange(n), warps)

    def load(self):
        test = self.make_split("test") if self.sizes["test"] else None
        return self.make_split("train"), self.make_split("val"), test
