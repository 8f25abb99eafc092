"""A tiny GTSRB in the official archive layout, made by the tests themselves.

Images are saved at *half* their "original" size while the CSVs keep the original
Width/Height/ROI, as on a re-sized mirror, so ROI scaling is exercised. Each class
has a distinct colour and a bright square in its ROI, so a network can learn it.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

HEADER = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"
COLOURS = [(220, 30, 30), (30, 200, 30), (30, 30, 220), (200, 200, 30), (200, 30, 200), (30, 200, 200)]


def _image(rng, class_id: int, w: int, h: int, roi, shrink: int = 2, colour_shift: int = 0) -> bytes:
    arr = rng.integers(0, 60, size=(h, w, 3), dtype=np.uint8)
    x1, y1, x2, y2 = roi
    arr[y1 : y2 + 1, x1 : x2 + 1] = COLOURS[(class_id + colour_shift) % len(COLOURS)]
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    arr[cy - 2 : cy + 3, cx - 2 : cx + 3] = 255
    im = Image.fromarray(arr).resize((w // shrink, h // shrink), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, format="PPM")
    return buf.getvalue()


def _dims(rng):
    w, h = int(rng.integers(30, 64)), int(rng.integers(30, 64))
    m = int(rng.integers(3, 6))
    return w, h, (m, m, w - m - 1, h - m - 1)


def make_archives(
    folder: Path,
    classes: int = 3,
    tracks: int | list[int] = 3,
    frames: int = 4,
    test_images: int = 12,
    with_test: bool = True,
    with_gt: bool = True,
    seed: int = 0,
    colour_shift: int = 0,
) -> Path:
    """Write GTSRB_Final_Training_Images.zip (+ test and GT archives) into ``folder``; ``tracks`` per class may be
    one number or one per class (uneven class frequencies). ``colour_shift`` paints each class in the colour of
    the class that many further on: the same files, labels and tracks, with other pixels."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / "GTSRB_Final_Training_Images.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for c in range(classes):
            d = f"GTSRB/Final_Training/Images/{c:05d}/"
            lines = [HEADER]
            for t in range(tracks if isinstance(tracks, int) else tracks[c]):
                for f in range(frames):
                    name = f"{t:05d}_{f:05d}.ppm"
                    w, h, roi = _dims(rng)
                    zf.writestr(d + name, _image(rng, c, w, h, roi, colour_shift=colour_shift))
                    lines.append(f"{name};{w};{h};{roi[0]};{roi[1]};{roi[2]};{roi[3]};{c}")
            zf.writestr(d + f"GT-{c:05d}.csv", "\n".join(lines) + "\n")
    if with_test:
        test_lines, gt_lines = [HEADER.rsplit(";", 1)[0]], [HEADER]
        with zipfile.ZipFile(folder / "GTSRB_Final_Test_Images.zip", "w", zipfile.ZIP_DEFLATED) as zf:
            for i in range(test_images):
                c = i % classes
                name = f"{i:05d}.ppm"
                w, h, roi = _dims(rng)
                zf.writestr("GTSRB/Final_Test/Images/" + name, _image(rng, c, w, h, roi, colour_shift=colour_shift))
                row = f"{name};{w};{h};{roi[0]};{roi[1]};{roi[2]};{roi[3]}"
                test_lines.append(row)
                gt_lines.append(f"{row};{c}")
            zf.writestr("GTSRB/Final_Test/Images/GT-final_test.test.csv", "\n".join(test_lines) + "\n")
        if with_gt:
            with zipfile.ZipFile(folder / "GTSRB_Final_Test_GT.zip", "w", zipfile.ZIP_DEFLATED) as zf:
                zf.writestr("GT-final_test.csv", "\n".join(gt_lines) + "\n")
    return folder
