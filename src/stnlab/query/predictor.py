"""Class probabilities and top-k guesses for uint8 images at the network's size."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from stnlab.errors import ConfigError
from stnlab.query.classifier import ImageClassifier


@dataclass
class Guess:
    class_id: int
    name: str
    prob: float

    def __str__(self) -> str:
        return f"{self.name} {100 * self.prob:.2f}%"


def check_top_k(top_k: int, num_classes: int | None = None, ckpt: str | None = None) -> int:
    """``top_k`` if it is 1..``num_classes`` (with ``ckpt``: the classes of that checkpoint's network; None, before
    the checkpoint is read: any positive integer)."""
    most = num_classes if num_classes is not None else float("inf")
    if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= most:
        of = f" ({ckpt} tells {num_classes} classes apart)" if ckpt else ""
        within = f"in 1..{num_classes}" if num_classes is not None else ">= 1"
        raise ConfigError(f"top_k={top_k} must be an integer {within}{of}")
    return top_k


class Predictor:
    """A trained ``STNModule`` on ``device``, run in batches of ``batch_size``."""

    def __init__(self, module, device: torch.device | str = "cpu", batch_size: int = 256):
        self.device = torch.device(device)
        self.module = module.to(self.device).eval()
        self.classifier = ImageClassifier.of(self.module)
        self.batch_size = batch_size

    @property
    def image_size(self) -> int:
        return self.classifier.image_size

    def top_k(self, probs: torch.Tensor, k: int) -> list[list[Guess]]:
        """(N, C) probabilities -> per row the ``k`` most probable classes, best first."""
        names = self.classifier.class_names
        values, indices = probs.topk(k, dim=1)
        return [
            [Guess(int(c), names[int(c)], float(p)) for p, c in zip(vs, cs)]
            for vs, cs in zip(values.tolist(), indices.tolist())
        ]

    @torch.no_grad()
    def probabilities(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, S, S) -> softmax probabilities (N, 43) on the CPU."""
        out = [
            self.classifier(pixels[i : i + self.batch_size].to(self.device)).float().softmax(1).cpu()
            for i in range(0, len(pixels), self.batch_size)
        ]
        return torch.cat(out)
