"""Classifier backbones: a stack of conv blocks and a fully connected head.

A backbone exposes ``blocks`` (an ``nn.ModuleList`` of conv blocks), ``shape_at(k)``
(the (channels, size) of the tensor entering block k; k = len(blocks) is the
last block's output), and ``head(features)``, where ``features`` lists every
block's output so that multi-scale heads can use earlier stages.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from stnlab.models.blocks import ConvBlock, ConvBNBlock


class ConvBackbone(nn.Module):
    """Conv blocks + FC + classifier, as the reference's networks (IDSIA and LeCun style).

    Args:
        widths: output channels of each conv block (IDSIA: 150, 200, 300).
        kernels: kernel size of each conv block (IDSIA: 7, 4, 4).
        fc: width of the hidden fully connected layer (IDSIA: 350).
        padding: conv padding (the reference uses 2 everywhere).
        contrast_norm: spatial contrastive normalisation after each block.
        multiscale: feed the head with every block's output (pooled to the last
            block's size), as in Sermanet & LeCun's multi-scale features.
        dropout: dropout before the hidden FC layer and before the classifier.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        num_classes: int,
        widths: Sequence[int] = (150, 200, 300),
        kernels: Sequence[int] = (7, 4, 4),
        fc: int = 350,
        padding: int = 2,
        contrast_norm: bool = False,
        multiscale: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        if len(widths) != len(kernels):
            raise ValueError(f"backbone widths {list(widths)} and kernels {list(kernels)} differ in length")
        self.shapes = [(in_channels, image_size)]
        blocks = []
        for w, k in zip(widths, kernels):
            c, s = self.shapes[-1]
            out = ConvBlock.out_size(s, k, padding)
            if out < 1:
                raise ValueError(
                    f"image_size={image_size} is too small for this backbone (block {len(blocks)} gets {s}x{s})"
                )
            blocks.append(ConvBlock(c, w, k, padding, contrast_norm))
            self.shapes.append((w, out))
        self.blocks = nn.ModuleList(blocks)
        self.multiscale = multiscale
        last_size = self.shapes[-1][1]
        if multiscale:
            self.pools = nn.ModuleList(nn.AdaptiveMaxPool2d(last_size) for _ in blocks[:-1])
            n_features = sum(c for c, _ in self.shapes[1:]) * last_size**2
        else:
            n_features = self.shapes[-1][0] * last_size**2
        self.fc = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(n_features, fc), nn.ReLU(inplace=True), nn.Dropout(dropout)
        )
        self.classifier = nn.Linear(fc, num_classes)

    def shape_at(self, k: int) -> tuple[int, int]:
        return self.shapes[k]

    def head(self, features: list[torch.Tensor]) -> torch.Tensor:
        if self.multiscale:
            pooled = [p(f) for p, f in zip(self.pools, features[:-1])] + [features[-1]]
            x = torch.cat([f.flatten(1) for f in pooled], dim=1)
        else:
            x = features[-1]
        return self.classifier(self.fc(x))


class CompactBackbone(nn.Module):
    """A batch-normed CNN sized for CPUs: blocks of 3x3 conv-BN-ReLU (then 2x2 max-pool), FC, classifier.

    Each block halves the size: at 32x32 with three blocks the head sees 4x4 maps. With the
    defaults it needs about 1/30 of the IDSIA network's FLOPs at 32x32, so a whole GTSRB
    epoch takes about a minute on two CPU cores.

    Args:
        widths: output channels of each block.
        depth: 3x3 convs per block: one number for every block, or one per block.
        fc: width of the hidden fully connected layer.
        dropout: dropout before the hidden FC layer and before the classifier.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        num_classes: int,
        widths: Sequence[int] = (32, 64, 128),
        depth: int | Sequence[int] = 1,
        fc: int = 256,
        dropout: float = 0.0,
    ):
        super().__init__()
        depths = [int(depth)] * len(widths) if isinstance(depth, int) else [int(d) for d in depth]
        if len(depths) != len(widths):
            raise ValueError(f"backbone depth {list(depths)} needs one entry per block of widths {list(widths)}")
        self.shapes = [(in_channels, image_size)]
        blocks = []
        for w, d in zip(widths, depths):
            c, s = self.shapes[-1]
            if s < 2:
                raise ValueError(
                    f"image_size={image_size} is too small for {len(widths)} blocks (block {len(blocks)} gets {s}x{s})"
                )
            blocks.append(ConvBNBlock(c, w, d))
            self.shapes.append((w, s // 2))
        self.blocks = nn.ModuleList(blocks)
        c, s = self.shapes[-1]
        # No batch norm in the head: BatchNorm1d fails on a last training batch of one image.
        self.fc = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(c * s * s, fc), nn.ReLU(inplace=True), nn.Dropout(dropout)
        )
        self.classifier = nn.Linear(fc, num_classes)

    def shape_at(self, k: int) -> tuple[int, int]:
        return self.shapes[k]

    def head(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.classifier(self.fc(features[-1]))
