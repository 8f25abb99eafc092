"""The trained network with its own input normalisation as a plain ``nn.Module``: what is exported and served.

``STNModule`` is a LightningModule (``torch.jit.trace`` of it fails: it is not attached to a
Trainer) holding optimiser and metric state besides the network; :class:`ImageClassifier`
keeps only the two parts inference needs, sharing their parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from stnlab.training.checkpoints import config_of


class ImageClassifier(nn.Module):
    """RGB images (N, 3, S, S), uint8 or float in [0, 255], S the training ``image_size`` -> logits (N, classes).

    Applies the checkpoint's normalisation (training-set channel statistics, local contrast
    normalisation) and then the network, STs included. Any batch size.
    """

    def __init__(self, normalizer: nn.Module, net: nn.Module, image_size: int, class_names: list[str]):
        super().__init__()
        self.normalizer, self.net, self.image_size = normalizer, net, int(image_size)
        self.class_names = list(class_names)

    @classmethod
    def of(cls, module) -> ImageClassifier:
        """The classifier inside an ``STNModule`` (parameters shared, in eval mode), its classes named and counted
        as its checkpoint says (a network trained on other data may have other classes than GTSRB's 43)."""
        info = config_of(module)
        return cls(module.normalizer, module.net, info.image_size, list(info.class_names)).eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalizer(images))
