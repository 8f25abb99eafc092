"""In-memory tensor datasets and the data module they share (GTSRB and synthetic data).

Batches are gathered with one tensor index per batch (``__getitems__``), never one
image at a time, and stay uint8 until they reach the device.
"""

from __future__ import annotations

import logging

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from stnlab.config.schema import check_classes, check_data
from stnlab.data.classes import NUM_CLASSES
from stnlab.data.classes import class_names as default_class_names
from stnlab.data.gtsrb import Split
from stnlab.data.normalize import channel_stats
from stnlab.data.resumable import ResumableLoader
from stnlab.errors import ConfigError
from stnlab.metrics import class_frequencies

log = logging.getLogger(__name__)


class InMemoryDataset(TensorDataset):
    """(images, labels), gathered one tensor index per batch (``__getitems__``)."""

    def __getitems__(self, indices: list[int]):
        idx = torch.as_tensor(indices, dtype=torch.long)
        if self.tensors[1].is_cuda:  # data resident on the GPU: an async copy, the host never waits
            idx = idx.pin_memory().to(self.tensors[1].device, non_blocking=True)
        return self[idx]


def _identity(batch):
    return batch


def class_balance_weights(labels: torch.Tensor, balance: float) -> torch.Tensor:
    """Per-sample weights ``count(class) ** -balance``: 0 keeps the data's class frequencies, 1 draws every
    class equally often, 0.5 (square-root sampling) halves the imbalance on a log scale.

    Holding out whole tracks leaves the rarest GTSRB classes with four or five tracks: without
    this they are seen ten times less often than the common ones.
    """
    counts = torch.bincount(labels.long()).double()
    return counts[labels.long()].pow(-float(balance))


class TensorDataModule(pl.LightningDataModule):
    """A data module over uint8 splits held in memory; subclasses implement :meth:`load`.

    After ``setup``: ``train``, ``val`` and (maybe) ``test`` are :class:`Split`s,
    ``mean``/``std`` the training split's per-channel statistics. Labels lie in ``0..num_classes-1``
    (``data.num_classes``, which also sizes the network's output), named by ``class_names``.
    """

    name = "tensors"

    def __init__(
        self,
        batch_size: int = 50,
        eval_batch_size: int = 500,
        num_workers: int = 0,
        image_size: int = 48,
        name: str | None = None,
        balance: float = 0.0,
        num_classes: int = NUM_CLASSES,
        class_names: list[str] | None = None,
    ):
        super().__init__()
        check_classes(num_classes, class_names)
        check_data({"image_size": image_size, "balance": balance})
        self.num_classes = int(num_classes)
        self.class_names = list(class_names) if class_names is not None else default_class_names(self.num_classes)
        self.balance = float(balance)
        if name:
            self.name = name
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.image_size = num_workers, image_size
        self.train: Split | None = None
        self.val: Split | None = None
        self.test: Split | None = None
        self.mean = self.std = None
        # Each class's share of all training images (train + validation split): the test set's class mix,
        # which val/acc_weighted weighs validation accuracy by (stnlab.training.metrics).
        self.class_frequencies: torch.Tensor | None = None

    def load(self) -> tuple[Split, Split, Split | None]:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.train is None:
            self.train, self.val, self.test = self.load()
            self.mean, self.std = channel_stats(self.train.images)
            labels = torch.cat([s.labels for s in (self.train, self.val) if s is not None])
            self.class_frequencies = class_frequencies(labels, self.num_classes)
            top = max(
                int(split.labels.max())
                for split in (self.train, self.val, self.test)
                if split is not None and len(split)
            )
            if top >= self.num_classes:
                raise ConfigError(
                    f"data.num_classes={self.num_classes} but the labels go up to {top}; set data.num_classes={top + 1}"
                )
            log.info(
                "data: %d train, %d val, %s test images at %dx%d",
                len(self.train),
                len(self.val),
                len(self.test) if self.test is not None else "no",
                self.image_size,
                self.image_size,
            )

    @property
    def has_test(self) -> bool:
        return self.test is not None and len(self.test) > 0

    # Where the loaders gather batches: None (host memory) or the accelerator, set by
    # stnlab.training.speed.SpeedSwitches (speed.device_resident); each split is copied there once.
    resident_device: torch.device | None = None

    def _dataset(self, split: Split) -> InMemoryDataset:
        if self.resident_device is None:
            return InMemoryDataset(split.images, split.labels)
        copies = self.__dict__.setdefault("_resident_copies", {})  # id(split) -> (split, its copy there)
        if id(split) not in copies:
            copies[id(split)] = (
                split,
                InMemoryDataset(split.images.to(self.resident_device), split.labels.to(self.resident_device)),
            )
        return copies[id(split)][1]

    def _loader(self, split: Split, batch_size: int, shuffle: bool) -> DataLoader:
        dataset = self._dataset(split)
        workers = 0 if dataset.tensors[1].is_cuda else self.num_workers
        # Own generators: no loader draws from the global RNG, so a resumed run's RNG matches (resumable.py).
        kw = dict(
            num_workers=workers,
            collate_fn=_identity,
            persistent_workers=workers > 0,
            generator=torch.Generator().manual_seed(0),
        )
        if shuffle and (self.trainer is None or self.trainer.world_size == 1):
            # Order from (seed, epoch) alone, resumable mid-epoch; the seed is the run's (seed_everything).
            weights = class_balance_weights(split.labels, self.balance) if self.balance else None
            return ResumableLoader(dataset, batch_size, seed=torch.initial_seed(), weights=weights, **kw)
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, **kw)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val, self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test, self.eval_batch_size, shuffle=False)
