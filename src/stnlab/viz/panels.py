"""Pictures of an :class:`~stnlab.viz.trace.STView`: per image, the ST's input with the sampled
region outlined beside the ST's output; a grid of them; an animated GIF of grids."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageDraw

from stnlab.geometry import to_pixels
from stnlab.viz.trace import STView

OUTLINE = (0, 255, 0)
MARGIN = (128, 128, 128)
GAP = 2


def to_pil(image: torch.Tensor, scale: int = 1) -> Image.Image:
    """uint8 (3, H, W) -> RGB PIL image, enlarged ``scale`` times (nearest: one block per pixel)."""
    img = Image.fromarray(image.permute(1, 2, 0).contiguous().numpy())
    return img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST) if scale != 1 else img


def panel(view: STView, i: int, scale: int = 4) -> Image.Image:
    """Image ``i`` of ``view``: [input with the outline of the sampled region | output].

    The input sits on a grey margin of a quarter of its size, so that a region reaching
    outside the image (a zoom-out, a large shift) stays visible.
    """
    src, dst = to_pil(view.inputs[i], scale), to_pil(view.outputs[i], scale)
    w, h = src.size
    m = w // 4
    canvas = Image.new("RGB", (w + 2 * m, h + 2 * m), MARGIN)
    canvas.paste(src, (m, m))
    xy = (to_pixels(view.outline[i], (h, w)) + m).tolist()
    ImageDraw.Draw(canvas).line([tuple(p) for p in xy], fill=OUTLINE, width=max(1, scale // 2))
    out = Image.new("RGB", (canvas.width + GAP + w, canvas.height), (255, 255, 255))
    out.paste(canvas, (0, 0))
    out.paste(dst, (canvas.width + GAP, m))
    return out


def panel_grid(view: STView, cols: int = 4, scale: int = 4) -> Image.Image:
    """All images of ``view`` as panels, ``cols`` per row, separated by white gaps."""
    panels = [panel(view, i, scale) for i in range(len(view.inputs))]
    w, h = panels[0].size
    rows = (len(panels) + cols - 1) // cols
    cols = min(cols, len(panels))
    grid = Image.new("RGB", (cols * w + (cols - 1) * 3 * GAP, rows * h + (rows - 1) * 3 * GAP), (255, 255, 255))
    for k, p in enumerate(panels):
        grid.paste(p, ((k % cols) * (w + 3 * GAP), (k // cols) * (h + 3 * GAP)))
    return grid


def write_gif(frames: list[Image.Image], path: Path | str, duration_ms: int = 500) -> Path:
    """An animated GIF (looping) of ``frames``, each shown ``duration_ms``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=duration_ms, loop=0, optimize=False)
    return path
