"""The trained network with its own input normalisation as a plain ``nn.Module``: what is exported and served.

``STNModule`` is a LightningModule (``torch.jit.trace`` of it fails: it is not attached to a
Trainer) holding optimiser and metric state besides the network; :class:`ImageClassifier`
keeps only the two parts inference needs, sharing their parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from stnlab.data.classes import GTSRB_CLASSES


class ImageClassifier(nn.Module):
    """RGB images (N, 3, S, S), uint8 or float in [0, 255], S the training ``image_size`` -> logits (N, 43).

    Applies the checkpoint's normalisation (training-set channel statistics, local contrast
    normalisation) and then the network, STs included. Any batch size.
    """

    def __init__(self, normalizer: nn.Module, net: nn.Module, image_size: int):
        super().__init__()
        self.normalizer, self.net, self.image_size = normalizer, net, int(image_size)
        self.class_names = list(GTSRB_CLASSES)

    @classmethod
    def of(cls, module) -> ImageClassifier:
        """The classifier inside an ``STNModule`` (parameters shared, in eval mode)."""
        return cls(module.normalizer, module.net, module.cfg["data"]["image_size"]).eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalizer(images))
