"""Pictures of what the STs did to query images: one figure per image, an animation per sequence.

A figure is [the input at display size, on a grey margin, with each ST's sampled region outlined |
each ST's output, enlarged], under a caption (the top guesses). The outlines and outputs come
from :func:`stnlab.viz.trace.trace_sts`: an ST's outline is its output border mapped through
its transform and then through every earlier ST's, so it lands on the input image; for an ST
after a conv block (whose input is a feature map), outline and output are how that ST would
move the *image* (exact for input STs, an approximation beyond: normalised coordinates are
shared by every resolution). Those panels are labelled "(on the image)".
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from itertools import cycle
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps

from stnlab.viz.panels import OUTLINE, outlined, to_pil, write_gif
from stnlab.viz.trace import STView, trace_sts

# One outline colour per ST, in forward order (the first is the visualize panels' green).
COLOURS = (OUTLINE, (255, 140, 0), (0, 190, 255), (255, 0, 200), (255, 255, 0))
GAP = 6
TEXT = (0, 0, 0)
BACKGROUND = (255, 255, 255)
LABEL_GREEN = (0, 140, 0)  # the outline's green, darkened to be legible as text on white


def st_views(module, pixels: torch.Tensor) -> tuple[list[STView], list[torch.Tensor]]:
    """Trace every ST of ``module`` on uint8 (N, 3, S, S) images: the views and each ST's outline (N, P, 2)
    in the normalised coordinates of the input image."""
    views = trace_sts(module, pixels)
    outlines, chain = [], []
    for view in views:
        points = view.outline
        for transform, params in reversed(chain):  # into the coordinates of the view before each earlier ST
            points = transform.map_points(params, points)
        outlines.append(points)
        chain.append((module.net.transformers[view.name].transform, view.params))
    return views, outlines


def figure(
    display: Image.Image, views: Sequence[STView], outlines: Sequence[torch.Tensor], i: int, caption: str
) -> Image.Image:
    """Image ``i`` of a traced batch: [``display`` with the ST outlines | each ST's output], ``caption`` above."""
    side = max(display.size)
    panels = [(outlined(display, side // 8, [points[i] for points in outlines], cycle(COLOURS), 2), "input")]
    for view in views:
        out = view.outputs[i]
        scale = max(1, side // out.shape[-1])
        label = f"ST {view.name}" if view.position == 0 else f"ST {view.name} (on the image)"
        panels.append((to_pil(out, scale), label))
    font = ImageFont.load_default(size=12)
    line = font.getbbox("Ag")[3] + 4
    width = sum(p.width for p, _ in panels) + GAP * (len(panels) + 1)
    height = line + max(p.height for p, _ in panels) + line + GAP
    out = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(out)
    draw.text((GAP, 2), caption, fill=TEXT, font=font)
    x = GAP
    for k, (p, label) in enumerate(panels):
        out.paste(p, (x, line))
        colour = TEXT if k == 0 else COLOURS[(k - 1) % len(COLOURS)]
        draw.text((x, line + p.height + 2), label, fill=colour if colour != OUTLINE else LABEL_GREEN, font=font)
        x += p.width + GAP
    return out


def same_size(frames: Sequence[Image.Image], even: bool = False) -> list[Image.Image]:
    """``frames`` padded (white, bottom and right) to the largest width and height (even ones for video codecs)."""
    w, h = max(f.width for f in frames), max(f.height for f in frames)
    if even:
        w, h = w + w % 2, h + h % 2
    return [ImageOps.expand(f, (0, 0, w - f.width, h - f.height), fill=BACKGROUND) for f in frames]


def write_animation_gif(frames: Sequence[Image.Image], path: Path, fps: float) -> Path:
    return write_gif(same_size(frames), path, max(20, round(1000 / fps)), keep=(TEXT, LABEL_GREEN, *COLOURS))


def write_mp4(frames: Sequence[Image.Image], path: Path, fps: float) -> Path:
    """An H.264 MP4 of ``frames`` at ``fps`` (PyAV's bundled FFmpeg)."""
    import av  # PyAV (FFmpeg) loads only when an MP4 is written

    frames = same_size(frames, even=True)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = frames[0].width, frames[0].height, "yuv420p"
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_image(f)))
        container.mux(stream.encode())
    return path
