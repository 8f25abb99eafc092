"""A training loader whose order depends only on (seed, epoch) and that resumes mid-epoch.

Lightning saves ``state_dict()`` of every loader that has one into each checkpoint and,
when a run restarts mid-epoch, calls ``load_state_dict()`` before iterating again: the
resumed epoch then skips the batches already trained on and sees the rest in the same
order as an uninterrupted run. No loader draws from the global RNG (each has its own
generator), so a restored RNG state (see ``STNModule.on_load_checkpoint``) gives the
same augmentation as an uninterrupted run too.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler


def epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch)]).generate_state(1)[0])


class EpochShuffleSampler(Sampler[int]):
    """A random permutation of ``range(n)`` per epoch, from ``(seed, epoch)`` alone; ``start`` skips a prefix.

    With ``weights`` (one per sample), an epoch is instead ``n`` draws with replacement in
    proportion to them (class-balanced sampling), still from ``(seed, epoch)`` alone.
    """

    def __init__(self, n: int, seed: int, weights: torch.Tensor | None = None):
        self.n, self.seed = n, int(seed)
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.epoch = self.start = 0

    def set_epoch(self, epoch: int) -> None:  # called by Lightning before every epoch
        self.epoch = int(epoch)

    def order(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        if self.weights is not None:
            return torch.multinomial(self.weights, self.n, replacement=True, generator=g).tolist()
        return torch.randperm(self.n, generator=g).tolist()

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        start, self.start = self.start, 0
        return iter(self.order(self.epoch)[start:])


class ResumableLoader(DataLoader):
    """``DataLoader`` over an :class:`EpochShuffleSampler` that tracks how many batches it handed out.

    ``state_dict()`` is ``{"epoch", "batches"}``; ``load_state_dict()`` makes the next
    iteration resume that epoch after that many batches.
    """

    def __init__(self, dataset, batch_size: int, seed: int, weights: torch.Tensor | None = None, **kwargs):
        sampler = EpochShuffleSampler(len(dataset), seed, weights)
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, **kwargs)
        self._epoch = 0
        self._batches = 0
        self._skip = 0

    def __iter__(self):
        # A generator: the epoch is read at the first batch, after Lightning's set_epoch.
        skip = self._skip if self._skip < len(self) else 0
        self._skip = 0
        if isinstance(self.sampler, EpochShuffleSampler):
            self.sampler.start = skip * self.batch_size
        else:  # Lightning swapped the sampler (overfit_batches, several devices): no mid-epoch resume
            skip = 0
        self._epoch, self._batches = getattr(self.sampler, "epoch", 0), skip
        for batch in super().__iter__():
            self._batches += 1
            yield batch

    def state_dict(self) -> dict:
        return {"epoch": self._epoch, "batches": self._batches}

    def load_state_dict(self, state: dict) -> None:
        if isinstance(self.sampler, EpochShuffleSampler):
            self.sampler.set_epoch(int(state.get("epoch", 0)))
        self._skip = int(state.get("batches", 0))
