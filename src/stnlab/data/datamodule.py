"""The GTSRB ``LightningDataModule``: official archives -> cached uint8 tensors -> batches."""

from __future__ import annotations

import logging
from pathlib import Path

from stnlab.config.schema import check_data
from stnlab.data import archives
from stnlab.data.classes import NUM_CLASSES
from stnlab.data.gtsrb import (
    Split,
    _open,
    archive_fingerprint,
    cached,
    ground_truth_rows,
    read_test,
    read_train,
    split_by_tracks,
    train_classes,
)
from stnlab.data.tensors import TensorDataModule
from stnlab.errors import DataError

log = logging.getLogger(__name__)


def check_coverage(train_zip: Path, test_zip: Path | None, gt_zip: Path | None) -> None:
    """The training archive's classes (structurally checked by ``train_classes``) against the test ground truth.

    A training archive must hold every class its test set has; the full set has all 43. Without the
    ground truth only a warning can say that a structurally sound archive holds fewer than 43.
    """
    with _open(train_zip) as zf:
        classes = set(train_classes(zf.namelist(), train_zip.name))
    if gt_zip is None:
        if len(classes) != NUM_CLASSES:
            log.warning(
                "%s holds classes 00000 to %05d only (the official archive has %d) and there is no test "
                "ground truth to check it against",
                train_zip.name,
                max(classes),
                NUM_CLASSES,
            )
        return
    missing = sorted({r.class_id for r in ground_truth_rows(gt_zip)} - classes)
    if missing:
        shown = ", ".join(f"{c:05d}" for c in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise DataError(
            f"{train_zip.name} lacks class folder(s) {shown} that the test ground truth "
            f"{gt_zip.name} has; replace the training archive with the official one"
        )


class GTSRBDataModule(TensorDataModule):
    """GTSRB from the official archives (or a mirror), split into train/val by whole tracks; the options are
    described in conf/data/gtsrb.yaml."""

    name = "gtsrb"

    def __init__(
        self,
        root: str = "data",
        mirror: str | None = None,
        image_size: int = 48,
        crop_roi: bool = False,
        val_tracks_per_class: int = 1,
        split_seed: int = 0,
        batch_size: int = 50,
        eval_batch_size: int = 500,
        num_workers: int = 0,
        download_timeout: float = 30.0,
        download_retries: int = 3,
        name: str = "gtsrb",
        balance: float = 0.0,
        num_classes: int = 43,
    ):
        super().__init__(batch_size, eval_batch_size, num_workers, image_size, name, balance, num_classes)
        check_data({"val_tracks_per_class": val_tracks_per_class})
        self.root = Path(root).expanduser()
        self.mirror = mirror or None
        self.crop_roi, self.val_tracks_per_class, self.split_seed = crop_roi, val_tracks_per_class, split_seed
        self._fetch_kw = dict(root=self.root, mirror=self.mirror, timeout=download_timeout, retries=download_retries)
        self._warned_no_test = False
        self._archives: tuple | None = None
        self._prepared = False

    def _fetch(self):
        if self._archives is None:
            train_zip = archives.fetch(archives.TRAIN, **self._fetch_kw)
            test_zip = archives.try_fetch(archives.TEST, **self._fetch_kw)
            gt_zip = archives.try_fetch(archives.TEST_GT, **self._fetch_kw)
            check_coverage(train_zip, test_zip, gt_zip)  # before anything is decoded or cached
            self._archives = train_zip, test_zip, gt_zip
        return self._archives

    def _cached(self, name: str, read, *paths: Path) -> Split:
        key = dict(version=1, archives=archive_fingerprint(*paths), image_size=self.image_size, crop_roi=self.crop_roi)
        return cached(self.root / "cache", name, key, lambda: read(*paths, self.image_size, self.crop_roi))

    def _load_test(self, test_zip: Path | None, gt_zip: Path | None) -> Split | None:
        if test_zip is None or gt_zip is None:
            if not self._warned_no_test:
                log.warning(
                    "GTSRB test labels unavailable (no %s in the mirror and no network): the test stage is skipped",
                    archives.TEST_GT.filename if gt_zip is None else archives.TEST.filename,
                )
                self._warned_no_test = True
            return None
        return self._cached("test", read_test, test_zip, gt_zip)

    def prepare_data(self) -> None:
        if self._prepared:  # the run prepares the data before Lightning does: decoded and cached once
            return
        train_zip, test_zip, gt_zip = self._fetch()
        self._cached("train", read_train, train_zip)
        self._load_test(test_zip, gt_zip)
        self._prepared = True

    def load(self):
        train_zip, test_zip, gt_zip = self._fetch()
        full = self._cached("train", read_train, train_zip)
        train_idx, val_idx = split_by_tracks(full, self.val_tracks_per_class, self.split_seed)
        return full.subset(train_idx), full.subset(val_idx), self._load_test(test_zip, gt_zip)
