"""Query inputs -> frames: one image, a folder of images, a GTSRB track, or a video file.

Every frame is decoded to RGB (grey and palette images are expanded; an alpha channel is
composited over black, so a transparent pixel is "nothing there" whatever colour it stores;
JPEG EXIF rotations are applied), checked against :data:`MIN_SIDE`, and kept twice: at the
network's size, resized exactly as the data loader resizes GTSRB images
(:func:`stnlab.data.gtsrb.decode`: PIL bilinear, antialiased when shrinking; the whole image,
since a new image has no ROI to crop), and as a display copy no longer than
``display_size`` on its longer side. Originals are not kept, so a long video costs little memory.

A folder is a *sequence* (a GTSRB track: ``xxxxx_yyyyy.ppm``, frames of one sign) when all its
images share one ``xxxxx_`` track prefix; otherwise a set of independent images. Either way
frames are taken in natural name order (``frame2`` before ``frame10``).
"""

from __future__ import annotations

import logging
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from stnlab.data.gtsrb import MAX_PIXELS, ImageTooLarge, network_pixels, open_image
from stnlab.errors import StnlabError, described

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".ppm", ".pgm", ".pbm", ".pnm", ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".ogv", ".wmv", ".flv")
# Below this no sign is recognisable (GTSRB's smallest images are 15x15): the network would see
# its 32 or 48 px input interpolated from a handful of pixels.
MIN_SIDE = 8
_SMALLER = "pass a smaller image (a sign needs a few hundred pixels a side)"
NO_FRAMES = "{path} holds no video frames; pass a video with at least one frame, an image or a folder of frames"
TRACK_FRAME = re.compile(r"^(\d{5})_(\d{5})\.[A-Za-z]+$")
# Bytes read from one image file or archive member (it is read whole): far above any photo of MAX_PIXELS.
MAX_IMAGE_BYTES = 256 << 20


class InputError(StnlabError):
    """A query input that cannot be read: missing, not an image or video, too small, empty."""


@dataclass
class Frame:
    """``name`` (file name, ``frame_00012``, ...), ``pixels`` uint8 (3, S, S) at the network's size,
    ``display`` the RGB image for figures (longer side <= display_size)."""

    name: str
    pixels: torch.Tensor
    display: Image.Image


@dataclass
class Query:
    """What ``input=`` named: ``kind`` is image, folder, track or video; ``label`` a short name for output
    folders; ``fps`` the rate of a video."""

    source: str
    kind: str
    label: str
    frames: list[Frame] = field(default_factory=list)
    fps: float | None = None
    # Files of a folder or track that could not be read and were left out: (where, why), in order.
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def is_sequence(self) -> bool:
        return self.kind in ("track", "video")

    @property
    def pixels(self) -> torch.Tensor:
        """uint8 (N, 3, S, S): every frame at the network's size."""
        return torch.stack([f.pixels for f in self.frames])


def natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB; transparency (RGBA, LA, palette with a transparent index) over black."""
    im = ImageOps.exif_transpose(im)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    return im.convert("RGB")


def decode_image(data: bytes, name: str) -> Image.Image:
    """Encoded image bytes -> RGB PIL image, or :class:`InputError` naming ``name``."""
    if not data:
        raise InputError(f"{name} is empty (0 bytes); pass an image file (PPM, PNG, JPEG, ...)")
    try:
        with open_image(data) as im:  # its header checked before any pixel is decoded
            im.load()
            rgb = to_rgb(im)
    except ImageTooLarge as e:
        raise InputError(f"{name} is {e}; {_SMALLER}") from None
    except UnidentifiedImageError:
        raise InputError(f"{name} is not an image in a format Pillow reads; pass a PPM, PNG, JPEG, ... file") from None
    except (OSError, ValueError, EOFError, SyntaxError, Image.DecompressionBombError) as e:  # truncated, corrupt, bomb
        raise InputError(
            f"{name} is not a readable image ({described(e)}); pass an intact PPM, PNG, JPEG, ... file"
        ) from None
    check_size(rgb, name)
    return rgb


def check_size(im: Image.Image, name: str) -> None:
    if min(im.size) < MIN_SIDE:
        raise InputError(
            f"{name} is {im.width}x{im.height} pixels: too small, each side must be at least {MIN_SIDE} "
            "pixels; pass a larger crop of the sign"
        )


def display_copy(im: Image.Image, display_size: int) -> Image.Image:
    """``im`` scaled so its longer side is ``display_size``: antialiased when shrinking, pixel blocks when enlarging."""
    scale = display_size / max(im.size)
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    method = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.NEAREST
    return im.resize(size, method)


def make_frame(name: str, im: Image.Image, image_size: int, display_size: int) -> Frame:
    return Frame(name, network_pixels(im, image_size), display_copy(im, display_size))


# --- where frames come from ------------------------------------------------------------------------------------------

# (name, where it is (for messages), its file or, for a zip member, its bytes), in order
Source = list[tuple[str, str, Path | bytes]]


def _read(item: Path | bytes, where: str) -> bytes:
    """A file read whole, unless it is larger than any image this reads (a disk image named .png)."""
    if isinstance(item, bytes):
        return item
    try:
        size = item.stat().st_size
        if size > MAX_IMAGE_BYTES:
            raise InputError(
                f"{item} is {size >> 20} MB, over the {MAX_IMAGE_BYTES >> 20} MB read from one image; {_SMALLER}"
            )
        return item.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read {where} ({e.strerror or e}); check its permissions") from None


def _folder_images(folder: Path) -> Source:
    # is_file(): regular files only, so a FIFO or device among them is never opened (reading one could block).
    files = [
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    ]
    return [(p.name, str(p), p) for p in sorted(files, key=lambda p: natural_key(p.name))]


def _is_track(names: list[str]) -> bool:
    matches = [TRACK_FRAME.match(n) for n in names]
    return len(names) > 1 and all(matches) and len({m.group(1) for m in matches}) == 1


def parse_track(track: str) -> tuple[int, int]:
    """``"14/3"`` -> (14, 3)."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(track))
    if not m:
        raise InputError(f"track={track} is not <class>/<track>; write e.g. track=14/3 (class 14, track 3)")
    return int(m.group(1)), int(m.group(2))


def _track_in_zip(path: Path, cls: int, trk: int) -> Source:
    folder = f"/{cls:05d}/"
    try:
        with zipfile.ZipFile(path) as zf:
            in_class = [n for n in zf.namelist() if folder in "/" + n and TRACK_FRAME.match(n.rsplit("/", 1)[-1])]
            members = sorted(
                (n for n in in_class if n.rsplit("/", 1)[-1].startswith(f"{trk:05d}_")),
                key=lambda n: natural_key(n.rsplit("/", 1)[-1]),
            )
            for m in members:
                if zf.getinfo(m).file_size > MAX_IMAGE_BYTES:  # a zip bomb would be inflated whole
                    raise InputError(
                        f"{path}:{m} unpacks to {zf.getinfo(m).file_size >> 20} MB, over the "
                        f"{MAX_IMAGE_BYTES >> 20} MB read from one image; {_SMALLER}"
                    )
            data = {m: zf.read(m) for m in members}  # a track is ~30 small frames
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise InputError(
            f"{path}: unreadable zip ({e}); pass the GTSRB training archive or an extracted folder"
        ) from None
    if not in_class:
        raise InputError(
            f"track={cls}/{trk}: {path} has no class folder {cls:05d} with track frames; "
            "pass GTSRB_Final_Training_Images.zip (test images carry no tracks)"
        )
    return [(m.rsplit("/", 1)[-1], f"{path}:{m}", d) for m, d in data.items()] or _no_track(path, cls, trk, in_class)


def _track_in_folder(root: Path, cls: int, trk: int) -> Source:
    candidates = [
        root,
        root / "Images",
        root / "Final_Training" / "Images",
        root / "GTSRB" / "Final_Training" / "Images",
    ]
    class_dir = next((c / f"{cls:05d}" for c in candidates if (c / f"{cls:05d}").is_dir()), None)
    if class_dir is None:
        raise InputError(
            f"track={cls}/{trk}: no class folder {cls:05d} under {root}; "
            "point input= at GTSRB/Final_Training/Images (or the training zip)"
        )
    frames = [f for f in _folder_images(class_dir) if f[0].startswith(f"{trk:05d}_") and TRACK_FRAME.match(f[0])]
    return frames or _no_track(class_dir, cls, trk, [p.name for p in class_dir.iterdir()])


def _no_track(where: Path, cls: int, trk: int, names: list[str]) -> Source:
    tracks = sorted({int(m.group(1)) for n in names if (m := TRACK_FRAME.match(n.rsplit("/", 1)[-1]))})
    have = f"tracks there: {tracks[0]}..{tracks[-1]}" if tracks else "it holds no track frames"
    raise InputError(f"track={cls}/{trk}: no frames {trk:05d}_*.ppm in {where} ({have}); pick another track")


def _video_frames(
    path: Path, max_frames: int | None, frame_step: int
) -> tuple[Iterator[tuple[str, Image.Image]], float]:
    """The frames of a video (every ``frame_step``-th, at most ``max_frames``) and their rate."""
    import av  # PyAV (FFmpeg) loads only when a video is read

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as e:
        raise InputError(
            f"{path} is not a readable video ({described(e)}); pass an MP4, AVI, MKV, MOV or WebM file"
        ) from None
    if not container.streams.video:
        container.close()
        raise InputError(NO_FRAMES.format(path=path))
    stream = container.streams.video[0]
    if (stream.width or 0) * (stream.height or 0) > MAX_PIXELS:  # from the header: no frame decoded yet
        container.close()
        raise InputError(
            f"{path} has {stream.width}x{stream.height} frames, over the limit of {MAX_PIXELS // 1_000_000} "
            f"megapixels; {_SMALLER}"
        )
    fps = float(stream.average_rate or stream.guessed_rate or 25) / frame_step

    def frames():
        kept = 0
        try:
            for i, frame in enumerate(container.decode(stream)):
                if i % frame_step:
                    continue
                if max_frames is not None and kept >= max_frames:
                    log.warning(
                        "%s has more frames: read the first %d (max_frames); raise max_frames or frame_step", path, kept
                    )
                    break
                kept += 1
                yield f"frame_{i:05d}", frame.to_image()
        except av.FFmpegError as e:
            raise InputError(
                f"{path}: video data is corrupt after {kept} frame(s) ({e}); "
                "re-encode the video or pass max_frames=" + str(kept)
            ) from None
        finally:
            container.close()

    return frames(), fps


def read_query(
    input: str | Path,
    image_size: int,
    display_size: int = 192,
    track: str | None = None,
    max_frames: int | None = None,
    frame_step: int = 1,
    skip_unreadable: bool = True,
) -> Query:
    """Decode everything ``input`` (with ``track``: inside it) names into frames; :class:`InputError` for any
    problem, before anything is written. In a folder or track, an unreadable image is left out (listed in
    ``Query.skipped``) with ``skip_unreadable``, else it stops everything; a folder of nothing readable stops."""
    path = Path(str(input)).expanduser()
    if not path.exists():
        raise InputError(f"input={path} does not exist; pass an image, a folder of images, a video or a GTSRB folder")
    if not (path.is_dir() or path.is_file()):  # a FIFO, a device, a socket: reading it could block or never end
        raise InputError(
            f"input={path} is not a regular file or folder; pass an image, a folder of images, a video or a GTSRB folder"
        )
    if frame_step < 1 or (max_frames is not None and max_frames < 1):
        raise InputError(f"frame_step={frame_step}, max_frames={max_frames}: expected positive integers")
    if track is not None:
        cls, trk = parse_track(track)
        items = _track_in_zip(path, cls, trk) if path.is_file() else _track_in_folder(path, cls, trk)
        query = Query(f"{path} track {cls}/{trk}", "track", f"{path.stem}_track_{cls}_{trk}")
    elif path.is_dir():
        items = _folder_images(path)
        if not items:
            raise InputError(
                f"input={path} is a folder without images ({', '.join(IMAGE_SUFFIXES[:6])}, ...); "
                "pass a folder of images or an image file"
            )
        query = Query(str(path), "track" if _is_track([name for name, _, _ in items]) else "folder", path.name)
    elif path.suffix.lower() in VIDEO_SUFFIXES:
        frames, fps = _video_frames(path, max_frames, frame_step)
        query = Query(str(path), "video", path.stem, fps=fps)
        for name, im in frames:
            check_size(im, f"{path} ({name})")
            query.frames.append(make_frame(name, im, image_size, display_size))
        if not query.frames:
            raise InputError(NO_FRAMES.format(path=path))
        return query
    else:  # one image: unreadable, it stops
        items, skip_unreadable = [(path.name, str(path), path)], False
        query = Query(str(path), "image", path.stem)
    if max_frames is not None and len(items) > max_frames:
        log.warning(
            "%s holds %d images: read the first %d (max_frames); raise max_frames to read them all",
            query.source,
            len(items),
            max_frames,
        )
    for name, where, item in items[:max_frames]:
        try:
            query.frames.append(make_frame(name, decode_image(_read(item, where), where), image_size, display_size))
        except InputError as e:
            if not skip_unreadable:
                raise
            log.warning("skipping %s: %s", where, e)
            query.skipped.append((where, str(e)))
    if not query.frames and query.skipped:
        raise InputError(
            f"none of the {len(query.skipped)} images of {query.source} is readable; first: {query.skipped[0][1]}"
        )
    return query
