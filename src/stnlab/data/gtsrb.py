"""GTSRB in its official archive layout: CSV parsing, decoding, caching, track splits.

Shapes: every split is held as ``images`` uint8 (N, 3, S, S) with S = ``image_size``,
``labels`` int64 (N,) in 0..42, and ``tracks`` int64 (N,): a global track id
(``class_id * 100_000 + track``) for training images, -1 for test images.

The CSVs' ``Width``, ``Height`` and ``Roi.*`` columns are in the *original*
image's pixels; mirrors may hold re-sized images, so a ROI is scaled by
``actual / Width`` before cropping. ``Roi.X2``/``Roi.Y2`` are inclusive.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import logging
import re
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stnlab.data.classes import NUM_CLASSES
from stnlab.errors import DataError, first_line
from stnlab.files import clear_parts, locked, written_whole

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2")
TRAIN_DIR = "GTSRB/Final_Training/Images/"
TEST_GT_CSV = "GT-final_test.csv"
# Decoded pixels allowed in one image (data, predict, serve): far above any sign photo (a 36 MP camera frame
# passes), far below what a small file can declare (a 17 KB PNG of 12000x12000 takes 1.2 GB and a second).
MAX_PIXELS = 40_000_000
TEST_DIR = "GTSRB/Final_Test/Images/"


@dataclasses.dataclass
class Split:
    images: torch.Tensor
    labels: torch.Tensor
    tracks: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> Split:
        """The rows ``index`` of every tensor field (a subclass's too)."""
        return dataclasses.replace(self, **{k: v[index] for k, v in vars(self).items()})


@dataclasses.dataclass(frozen=True)
class Row:
    member: str
    width: int
    height: int
    roi: tuple[int, int, int, int]
    class_id: int
    track: int


def parse_csv(text: str, source: str, directory: str, need_label: bool, folder_class: int | None = None) -> list[Row]:
    """Parse one official semicolon CSV; ``directory`` is prefixed to each Filename.

    ``folder_class``: the class of the folder holding the CSV, which every ``ClassId`` must name.
    """
    # newline=None: universal line ends, so CR-only (old Mac) and CRLF files read like LF ones.
    reader = csv.DictReader(io.StringIO(text, newline=None), delimiter=";")
    try:
        records = list(reader)
    except csv.Error as e:  # a NUL byte, an unterminated quote
        raise DataError(f"{source}: unreadable CSV ({e}); fix or replace the CSV") from None
    columns = REQUIRED_COLUMNS + (("ClassId",) if need_label else ())
    missing = [c for c in columns if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(
            f"{source}: missing column(s) {', '.join(missing)}; the CSV must have the official header {';'.join(columns)}"
        )
    rows: list[Row] = []
    seen: set[str] = set()
    for lineno, rec in enumerate(records, start=2):
        try:
            name = rec["Filename"].strip()
            w, h = int(rec["Width"]), int(rec["Height"])
            roi = tuple(int(rec[c]) for c in REQUIRED_COLUMNS[3:])
            label = int(rec["ClassId"]) if need_label else -1
        except (TypeError, ValueError, AttributeError):
            raise DataError(f"{source}, line {lineno}: malformed row {dict(rec)}; fix or replace the CSV") from None
        if need_label and not 0 <= label < NUM_CLASSES:
            raise DataError(
                f"{source}, line {lineno}: ClassId {label} outside 0..{NUM_CLASSES - 1}; fix or replace the CSV"
            )
        if folder_class is not None and label != folder_class:
            raise DataError(
                f"{source}, line {lineno}: ClassId {label} disagrees with its folder {folder_class:05d}; "
                "fix or replace the CSV"
            )
        if name in seen:  # a row listed twice would count its image twice
            raise DataError(f"{source}, line {lineno}: {name} is listed twice; fix or replace the CSV")
        seen.add(name)
        if w <= 0 or h <= 0:
            raise DataError(f"{source}, line {lineno}: non-positive Width/Height; fix or replace the CSV")
        if not (0 <= roi[0] <= roi[2] and 0 <= roi[1] <= roi[3]):
            raise DataError(
                f"{source}, line {lineno}: ROI {roi} is negative or inverted (X1 <= X2, Y1 <= Y2 expected); "
                "fix or replace the CSV"
            )
        track = int(name.split("_")[0]) if "_" in name and name.split("_")[0].isdigit() else -1
        rows.append(Row(directory + name, w, h, roi, label, track))
    return rows


def scaled_roi(row: Row, actual_w: int, actual_h: int) -> tuple[float, float, float, float]:
    """The ROI as a PIL crop box (left, upper, right, lower) in the actual image's pixels."""
    sx, sy = actual_w / row.width, actual_h / row.height
    x1, y1, x2, y2 = row.roi
    return (x1 * sx, y1 * sy, (x2 + 1) * sx, (y2 + 1) * sy)


class ImageTooLarge(ValueError):
    """An image whose header declares more than :data:`MAX_PIXELS` pixels (refused before it is decoded)."""


def open_image(data: bytes) -> Image.Image:
    """``data`` opened as an image, not yet decoded; :class:`ImageTooLarge` when its header alone declares more
    than :data:`MAX_PIXELS` pixels (what Pillow reads can fail with its own errors)."""
    limit = f"over the limit of {MAX_PIXELS // 1_000_000} megapixels"
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # Pillow's own limit, above ours
        try:
            im = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
            pixels = re.search(r"\((\d+) pixels\)", str(e))
            raise ImageTooLarge(
                f"{int(pixels.group(1)) // 1_000_000 if pixels else 'too many'} megapixels, {limit}"
            ) from None
    if im.width * im.height > MAX_PIXELS:
        im.close()
        raise ImageTooLarge(f"{im.width}x{im.height} pixels, {limit}")
    return im


def network_pixels(im: Image.Image, size: int) -> torch.Tensor:
    """RGB image -> uint8 (3, size, size): how every image, training or query, is resized for the network."""
    return torch.from_numpy(np.array(im.resize((size, size), Image.Resampling.BILINEAR))).permute(2, 0, 1).contiguous()


def decode(zf: zipfile.ZipFile, rows: list[Row], image_size: int, crop_roi: bool, source: str) -> torch.Tensor:
    out = torch.empty((len(rows), 3, image_size, image_size), dtype=torch.uint8)
    for i, row in enumerate(rows):
        try:
            with open_image(zf.read(row.member)) as im:
                im = im.convert("RGB")
                if crop_roi:
                    im = im.crop(tuple(round(v) for v in scaled_roi(row, *im.size)))
                out[i] = network_pixels(im, image_size)
        except KeyError:
            raise DataError(f"{source}: image {row.member} listed in the CSV is missing; replace the archive") from None
        # OSError includes UnidentifiedImageError; ValueError includes ImageTooLarge (a header claiming 100000x100000)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, Image.DecompressionBombError) as e:
            raise DataError(f"{source}: unreadable image {row.member} ({e}); replace the archive") from None
    return out


def _text(zf: zipfile.ZipFile, name: str, source: str) -> str:
    try:
        return zf.read(name).decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(
            f"{source}:{name}: not UTF-8 text ({e.reason} at byte {e.start}); fix or replace the CSV"
        ) from None
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise DataError(f"{source}: corrupt member {name} ({e}); replace the archive with a good copy") from None


def _open(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"{path}: truncated or corrupt zip ({e}); replace the archive with a good copy") from None


def train_classes(names: list[str], label: str) -> list[int]:
    """The class folders of a training archive with members ``names``, checked against the official structure.

    Official: every member lies under ``GTSRB/Final_Training/Images/<5-digit class>/`` (this exact
    capitalisation), each class folder holds its ``GT-<class>.csv``, no member appears twice, and the
    classes run from 00000 without a gap (00000..00042 in the full set). A subset that keeps this
    structure (the tests' tiny archives: 00000..00002) is accepted; whether it covers every class
    of the test set is checked against the test ground truth (``GTSRBDataModule``).
    """
    dup = next((n for n, k in collections.Counter(names).items() if k > 1), None)
    if dup is not None:  # zipfile would read one copy, and a listing would see it twice
        raise DataError(f"{label}: member {dup} appears twice; replace the archive with a good copy")
    folders: set[str] = set()
    for name in names:
        if name.lower().startswith(TRAIN_DIR.lower()) and not name.startswith(TRAIN_DIR):
            raise DataError(
                f"{label}: member {name} is not under {TRAIN_DIR} as capitalised officially; "
                "replace the archive with the official one"
            )
        if name.startswith(TRAIN_DIR) and name != TRAIN_DIR:
            folder = name[len(TRAIN_DIR) :].split("/")[0]
            if not re.fullmatch(r"\d{5}", folder) or "/" not in name[len(TRAIN_DIR) :]:
                raise DataError(
                    f"{label}: unexpected member {name} (class folders are {TRAIN_DIR}00000/ to "
                    f"{NUM_CLASSES - 1:05d}/); replace the archive with the official one"
                )
            folders.add(folder)
    classes = sorted(int(f) for f in folders)
    if not classes:
        raise DataError(f"{label}: no {TRAIN_DIR}000NN/GT-000NN.csv inside; this is not the official training archive")
    for c in classes:
        if f"{TRAIN_DIR}{c:05d}/GT-{c:05d}.csv" not in names:
            raise DataError(
                f"{label}: class folder {c:05d} has no GT-{c:05d}.csv; replace the archive with the official one"
            )
    gaps = sorted(set(range(classes[-1] + 1)) - set(classes))
    if gaps or classes[-1] >= NUM_CLASSES:
        missing = ", ".join(f"{c:05d}" for c in gaps[:5]) + (", ..." if len(gaps) > 5 else "")
        what = (
            f"class folder(s) {missing} missing"
            if gaps
            else f"class folder {classes[-1]:05d} beyond {NUM_CLASSES - 1:05d}"
        )
        raise DataError(
            f"{label}: {what} (the official archive has 00000 to {NUM_CLASSES - 1:05d}); "
            "replace the archive with the official one"
        )
    if len(classes) < 2:
        raise DataError(
            f"{label}: holds only class folder {classes[0]:05d} (the official archive has {NUM_CLASSES}); "
            "replace the archive with the official one"
        )
    return classes


def read_train(path: Path, image_size: int, crop_roi: bool) -> Split:
    with _open(path) as zf:
        classes = train_classes(zf.namelist(), path.name)
        rows: list[Row] = []
        for c in classes:
            directory = f"{TRAIN_DIR}{c:05d}/"
            name = f"{directory}GT-{c:05d}.csv"
            rows += parse_csv(
                _text(zf, name, path.name), f"{path.name}:{name}", directory, need_label=True, folder_class=c
            )
        if not rows:
            raise DataError(f"{path.name}: every GT-*.csv lists no image (header only); replace the archive")
        images = decode(zf, rows, image_size, crop_roi, path.name)
    labels = torch.tensor([r.class_id for r in rows], dtype=torch.int64)
    tracks = torch.tensor([r.class_id * 100_000 + r.track for r in rows], dtype=torch.int64)
    return Split(images, labels, tracks)


def ground_truth_rows(gt_path: Path) -> list[Row]:
    """The rows of the test ground truth, whose members lie in the test images' archive."""
    with _open(gt_path) as gz:
        if TEST_GT_CSV not in gz.namelist():
            raise DataError(f"{gt_path}: no {TEST_GT_CSV} inside; this is not the official test ground-truth archive")
        rows = parse_csv(
            _text(gz, TEST_GT_CSV, gt_path.name), f"{gt_path.name}:{TEST_GT_CSV}", TEST_DIR, need_label=True
        )
    if not rows:
        raise DataError(f"{gt_path.name}:{TEST_GT_CSV} lists no image (header only); replace the archive")
    return rows


def read_test(images_path: Path, gt_path: Path, image_size: int, crop_roi: bool) -> Split:
    rows = ground_truth_rows(gt_path)
    with _open(images_path) as zf:
        images = decode(zf, rows, image_size, crop_roi, images_path.name)
    labels = torch.tensor([r.class_id for r in rows], dtype=torch.int64)
    return Split(images, labels, torch.full_like(labels, -1))


def archive_fingerprint(*paths: Path) -> str:
    """A content fingerprint from the zips' central directories (member names and CRCs): cheap and exact."""
    h = hashlib.sha1()
    for p in paths:
        with _open(p) as zf:
            for info in sorted(zf.infolist(), key=lambda i: i.filename):
                h.update(f"{info.filename}:{info.CRC}:{info.file_size};".encode())
    return h.hexdigest()[:16]


def _load_cache(path: Path, key: dict) -> Split | None:
    if not path.exists():
        return None
    try:
        blob = torch.load(path, weights_only=True)
        ok = blob.get("key") == json.dumps(key, sort_keys=True)
        split = Split(blob["images"], blob["labels"], blob["tracks"])
        ok = ok and split.images.dtype == torch.uint8 and len(split.images) == len(split.labels) == len(split.tracks)
        ok = ok and blob["checksum"] == _checksum(split)
    except Exception as e:  # any unreadable cache is rebuilt, never trusted
        log.warning("cache %s is unreadable (%s): rebuilding it", path, type(e).__name__)
        return None
    if not ok:
        log.warning("cache %s does not match its key or checksum: rebuilding it", path)
        return None
    return split


def _checksum(split: Split) -> str:
    # A digest of every byte (a sum would miss swapped or compensating changes): bit rot, bad copies, tampering.
    h = hashlib.blake2b(digest_size=16)
    for t in (split.images, split.labels, split.tracks):
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(memoryview(t.contiguous().numpy()).cast("B"))
    return h.hexdigest()


def cached(cache_dir: Path, name: str, key: dict, build) -> Split:
    """Return the split from ``cache_dir`` if its cache matches ``key``, else ``build()`` it and cache it atomically.

    A cache that cannot be written (a read-only or full ``data.root``, its folder deleted meanwhile) is an
    environment problem, not a reason to lose the run: the split is used uncached, with a warning.
    """
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir / f"{name}-{digest}.pt"
    split = _load_cache(path, key)
    if split is not None:
        return split
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(locked(cache_dir / f".{name}-{digest}.lock"))
        except OSError as e:
            log.warning(
                "cannot write the cache in %s (%s): decoding %s without caching it", cache_dir, e.strerror or e, name
            )
            return build()
        split = _load_cache(path, key)  # another process may have built it while we waited
        if split is not None:
            return split
        clear_parts(path)  # left by a killed writer: we hold the lock
        log.info("decoding %s into cache %s", name, path)
        split = build()
        _write_cache(path, split, key)
    return split


def _write_cache(path: Path, split: Split, key: dict) -> None:
    try:
        # The folder is made again if it was deleted during the decode; 0644 under the usual umask: a shared
        # data.root stays readable.
        with written_whole(path) as part:
            blob = dict(vars(split), key=json.dumps(key, sort_keys=True), checksum=_checksum(split))
            torch.save(blob, part)
    except (OSError, RuntimeError) as e:  # torch.save reports a full disk as RuntimeError
        reason = getattr(e, "strerror", None) or first_line(e)
        log.warning("cannot write the cache %s (%s): going on without it", path, reason)


def split_by_tracks(split: Split, per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Hold out ``per_class`` whole tracks of every class: (train_index, val_index), disjoint in tracks.

    Every class keeps at least one track for training. The choice depends only on
    ``seed`` and the data, so every process of a run draws the same split.
    """
    rng = np.random.default_rng(seed)
    labels, tracks = split.labels.numpy(), split.tracks.numpy()
    val_tracks: list[int] = []
    for c in np.unique(labels):
        unique = np.unique(tracks[labels == c])
        k = min(per_class, len(unique) - 1)
        if k > 0:
            val_tracks += rng.choice(unique, size=k, replace=False).tolist()
    is_val = np.isin(tracks, np.asarray(val_tracks, dtype=np.int64))
    return torch.from_numpy(np.flatnonzero(~is_val)), torch.from_numpy(np.flatnonzero(is_val))
