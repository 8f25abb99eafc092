"""Stopping a run whose training loss is no longer finite, without a GPU sync per step."""

from __future__ import annotations

import torch


class FiniteWatch:
    """Checks that losses are finite without stalling the GPU.

    ``bool(torch.isfinite(loss))`` waits for every kernel queued so far, once per step. Here a
    CUDA loss is copied to pinned host memory asynchronously and read once its copy has landed
    (a later step, or :meth:`flush`); ``on_bad(value, step, epoch)`` is then called with the
    step it came from. CPU losses are checked at once.
    """

    def __init__(self, on_bad):
        self.on_bad = on_bad
        self.pending: list[tuple[torch.Tensor, torch.cuda.Event, int, int]] = []

    def __call__(self, loss: torch.Tensor, step: int, epoch: int) -> None:
        if not loss.is_cuda:
            if not torch.isfinite(loss):
                self.on_bad(loss.item(), step, epoch)
            return
        host = loss.detach().float().to("cpu", non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        self.pending.append((host, done, step, epoch))
        while self.pending and self.pending[0][1].query():
            self._check(self.pending.pop(0))

    def flush(self) -> None:
        while self.pending:
            item = self.pending.pop(0)
            item[1].synchronize()
            self._check(item)

    def _check(self, item) -> None:
        host, _, step, epoch = item
        if not torch.isfinite(host):
            self.pending.clear()
            self.on_bad(host.item(), step, epoch)
