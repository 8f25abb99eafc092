"""Pictures of an :class:`~stnlab.viz.trace.STView`: per image, the ST's input with the sampled
region outlined beside the ST's output; a grid of them (titled and captioned for ``visualize.py``); an
animated GIF of grids."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from stnlab.geometry import to_pixels
from stnlab.viz.trace import STView

OUTLINE = (0, 255, 0)
MARGIN = (128, 128, 128)
GAP = 2
# Colours of every figure's frame and text: exact in GIFs too (write_gif).
ANNOTATION = ((255, 255, 255), (0, 0, 0), MARGIN, OUTLINE)


def to_pil(image: torch.Tensor, scale: int = 1) -> Image.Image:
    """uint8 (3, H, W) -> RGB PIL image, enlarged ``scale`` times (nearest: one block per pixel)."""
    img = Image.fromarray(image.permute(1, 2, 0).contiguous().numpy())
    return img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST) if scale != 1 else img


def outlined(
    image: Image.Image, m: int, outlines: Sequence[torch.Tensor], colours: Iterable[tuple], width: int
) -> Image.Image:
    """``image`` on a grey margin of ``m`` pixels, each outline (P, 2) in the image's normalised coordinates drawn
    in its colour: the margin keeps a region reaching outside the image (a zoom-out, a large shift) visible."""
    canvas = Image.new("RGB", (image.width + 2 * m, image.height + 2 * m), MARGIN)
    canvas.paste(image, (m, m))
    draw = ImageDraw.Draw(canvas)
    for points, colour in zip(outlines, colours):
        xy = (to_pixels(points, (image.height, image.width)) + m).tolist()
        draw.line([tuple(p) for p in xy], fill=colour, width=width)
    return canvas


def panel(view: STView, i: int, scale: int = 4) -> Image.Image:
    """Image ``i`` of ``view``: [input with the outline of the sampled region, on a margin of a quarter of its
    size | output]."""
    src, dst = to_pil(view.inputs[i], scale), to_pil(view.outputs[i], scale)
    w, m = src.width, src.width // 4
    canvas = outlined(src, m, [view.outline[i]], [OUTLINE], max(1, scale // 2))
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


def labelled_grid(
    view: STView, captions: Sequence[str], title: str, legend: str, cols: int = 4, scale: int = 4
) -> Image.Image:
    """:func:`panel_grid` made to stand alone: ``title`` and ``legend`` above it, each panel's caption (its
    class) under it. The title is also the PNG's ``Title`` text (``image.info``, saved by :func:`save_png`)."""
    panels = [panel(view, i, scale) for i in range(len(view.inputs))]
    small, big = ImageFont.load_default(size=11), ImageFont.load_default(size=13)
    line = small.getbbox("Ag")[3] + 4
    w, h = panels[0].size
    cols = max(1, min(cols, len(panels)))
    rows = (len(panels) + cols - 1) // cols
    cell_w, cell_h = w + 3 * GAP, h + 2 * line + 3 * GAP
    head = 2 * line + 8
    width = max(cols * cell_w, int(big.getlength(title)) + 8, int(small.getlength(legend)) + 8)
    grid = Image.new("RGB", (width, head + rows * cell_h), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    draw.text((4, 2), title, fill=(0, 0, 0), font=big)
    draw.text((4, line + 4), legend, fill=(0, 110, 0), font=small)
    for k, (p, caption) in enumerate(zip(panels, captions)):
        x, y = (k % cols) * cell_w, head + (k // cols) * cell_h
        grid.paste(p, (x, y))
        for i, text in enumerate(_lines(caption, small, w)):
            draw.text((x, y + h + 1 + i * line), text, fill=(0, 0, 0), font=small)
    grid.info["Title"] = title
    return grid


def _lines(text: str, face: ImageFont.ImageFont, width: int, most: int = 2) -> list[str]:
    """``text`` in at most ``most`` lines of ``width`` pixels (the last shortened with an ellipsis if need be):
    a caption must not run into its neighbour."""
    lines: list[str] = []
    for word in text.split():
        if lines and face.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    lines, rest = lines[:most], lines[most:]
    last = " ".join([lines[-1], *rest]) if lines else ""
    while last and face.getlength(last) > width:
        last = last[:-2] + "…"
    return [*lines[:-1], last] if lines else []


def save_png(image: Image.Image, path: Path | str) -> Path:
    """Write ``image`` as a PNG, with its ``Title`` (if any) as the PNG's Title text."""
    info = PngInfo()
    if image.info.get("Title"):
        info.add_text("Title", str(image.info["Title"]))
    image.save(path, pnginfo=info)
    return Path(path)


def write_gif(
    frames: list[Image.Image], path: Path | str, duration_ms: int = 500, keep: Sequence[tuple[int, int, int]] = ()
) -> Path:
    """An animated GIF (looping) of ``frames``, each shown ``duration_ms``; the colours ``keep`` (outlines,
    captions) and :data:`ANNOTATION` stay exact in every frame."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    indexed = shared_palette(frames, [*ANNOTATION, *keep])
    indexed[0].save(path, save_all=True, append_images=indexed[1:], duration=duration_ms, loop=0, optimize=False)
    return path


def shared_palette(frames: Sequence[Image.Image], keep: Sequence[tuple[int, int, int]]) -> list[Image.Image]:
    """``frames`` as palette images sharing one palette: the ``keep`` colours, then the frames' commonest.

    GIF frames hold 256 colours each; left to itself, Pillow picks each frame's own, and a thin line or a
    small caption in an annotation colour (the outline's green) lands on the nearest photo colour instead,
    close to black, in some frames and not in others.
    """
    fixed = list(dict.fromkeys(keep))[:64]
    step = max(1, len(frames) // 16)  # a sample of the frames is enough to choose the photo colours
    sample = frames[::step]
    strip = Image.new("RGB", (max(f.width for f in sample), sum(f.height for f in sample)))
    y = 0
    for f in sample:
        strip.paste(f.convert("RGB"), (0, y))
        y += f.height
    flat = strip.quantize(256 - len(fixed), method=Image.Quantize.MEDIANCUT).getpalette() or []
    # Photo colours next to a kept one would take its pixels (Pillow's palette lookup is approximate).
    photo = [rgb for rgb in zip(flat[0::3], flat[1::3], flat[2::3]) if min(_distance(rgb, k) for k in fixed) > 12]
    colours = [c for rgb in fixed + photo[: 256 - len(fixed)] for c in rgb]
    palette = Image.new("P", (1, 1))
    palette.putpalette(colours + [0] * (768 - len(colours)))
    return [f.convert("RGB").quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]


def _distance(a: Sequence[int], b: Sequence[int]) -> int:
    return max(abs(x - y) for x, y in zip(a, b))
