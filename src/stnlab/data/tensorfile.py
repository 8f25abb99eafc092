"""GTSRB from a decoded tensor file instead of the archives: for machines without the archives.

The file is a stnlab cache (``data/cache/train-*.pt``) or any ``torch.save``d dict
with ``images`` uint8 (N, 3, S, S), ``labels`` int64 (N,) and ``tracks`` int64 (N,);
copy it to a cluster node and train there with ``data=gtsrb_tensors data.path=FILE``.
The validation split is drawn by whole tracks exactly as :class:`GTSRBDataModule` does.
"""

from __future__ import annotations

from pathlib import Path

import torch

from stnlab.data.gtsrb import Split, split_by_tracks
from stnlab.data.tensors import TensorDataModule
from stnlab.errors import DataError


def load_split(path: Path) -> Split:
    try:
        blob = torch.load(path, weights_only=True)
        split = Split(blob["images"], blob["labels"], blob["tracks"])
    except FileNotFoundError:
        raise DataError(
            f"{path}: no such tensor file; set data.path to a stnlab cache file (data/cache/train-*.pt)"
        ) from None
    except Exception as e:
        raise DataError(
            f"{path}: not a readable tensor file ({type(e).__name__}); rebuild it from the archives with data=gtsrb"
        ) from None
    if (
        split.images.dtype != torch.uint8
        or split.images.dim() != 4
        or not len(split.images) == len(split.labels) == len(split.tracks)
    ):
        raise DataError(f"{path}: expected uint8 images (N,3,S,S) with N labels and tracks; rebuild it with data=gtsrb")
    return split


class TensorFileDataModule(TensorDataModule):
    """Train/val by whole tracks from one tensor file; no test split."""

    name = "gtsrb"

    def __init__(
        self,
        path: str,
        val_tracks_per_class: int = 1,
        split_seed: int = 0,
        batch_size: int = 50,
        eval_batch_size: int = 500,
        num_workers: int = 0,
        image_size: int | None = None,
        name: str = "gtsrb",
        num_classes: int = 43,
    ):
        super().__init__(batch_size, eval_batch_size, num_workers, image_size or 0, name, num_classes=num_classes)
        self.path = Path(path).expanduser()
        self.val_tracks_per_class, self.split_seed = val_tracks_per_class, split_seed

    def load(self):
        full = load_split(self.path)
        size = full.images.shape[-1]
        if self.image_size and self.image_size != size:
            raise DataError(
                f"{self.path} holds {size}x{size} images but data.image_size={self.image_size}; set data.image_size={size}"
            )
        self.image_size = size
        train_idx, val_idx = split_by_tracks(full, self.val_tracks_per_class, self.split_seed)
        return full.subset(train_idx), full.subset(val_idx), None
