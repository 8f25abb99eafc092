"""A classifier with spatial transformers placed anywhere in its backbone."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from stnlab.models.spatial_transformer import SpatialTransformer
from stnlab.models.transforms import Transform


class STNClassifier(nn.Module):
    """Backbone + named spatial transformers.

    Args:
        backbone: factory ``(in_channels, image_size, num_classes) -> backbone``.
        transformers: ``{name: {position, locnet, transform}}``. ``position`` k places the
            ST on the tensor entering conv block k: 0 is the input image, k >= 1 is
            "after conv block k". ``locnet`` is a factory ``(in_channels, in_size)``;
            ``transform`` a :class:`Transform` (``None``: ``default_transform``).
        default_transform: the transform of every ST that does not name its own.
    """

    def __init__(
        self,
        backbone: Callable[..., nn.Module],
        transformers: Mapping[str, Mapping] | None = None,
        in_channels: int = 3,
        image_size: int = 48,
        num_classes: int = 43,
        default_transform: Transform | None = None,
        name: str = "model",
    ):
        super().__init__()
        self.name = name
        self.num_classes = num_classes
        self.backbone = backbone(in_channels=in_channels, image_size=image_size, num_classes=num_classes)
        n_blocks = len(self.backbone.blocks)
        self.positions: dict[str, int] = {}
        sts = {}
        for st_name, spec in (transformers or {}).items():
            missing = [k for k in ("position", "locnet") if spec.get(k) is None]
            if missing:
                raise ValueError(
                    f"ST '{st_name}' has no {' or '.join(missing)}: the preset defines STs "
                    f"{[n for n, sp in transformers.items() if sp.get('position') is not None]}; "
                    "check the name in model.transformers.<name>"
                )
            pos = int(spec["position"])
            if not 0 <= pos < n_blocks:
                raise ValueError(
                    f"ST '{st_name}' position {pos} is beyond the backbone: use 0 (input) to {n_blocks - 1} (after conv block {n_blocks - 1})"
                )
            c, s = self.backbone.shape_at(pos)
            transform = spec.get("transform") or default_transform
            sts[st_name] = SpatialTransformer(c, s, spec["locnet"], transform)
            self.positions[st_name] = pos
        self.transformers = nn.ModuleDict(sts)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The parameters in three groups, each optimised its own way (``STNModule.configure_optimizers``):
        ``backbone``; ``locnet``, every ST's localisation net (its own learning rate); ``regressor``, every ST's
        final layer, which starts at the identity (so weight decay, which would pull it towards theta = 0,
        a collapsed grid, is off). Groups without parameters are left out."""
        locnets = [p for st in self.transformers.values() for p in st.locnet.parameters()]
        regressors = [p for st in self.transformers.values() for p in st.regressor.parameters()]
        st_ids = {id(p) for p in locnets + regressors}
        groups = {
            "backbone": [p for p in self.parameters() if id(p) not in st_ids],
            "locnet": locnets,
            "regressor": regressors,
        }
        return {name: params for name, params in groups.items() if params}

    def sts_at(self, k: int) -> list[str]:
        return [n for n, p in self.positions.items() if p == k]

    def forward(self, x: torch.Tensor, st_outputs: dict | None = None) -> torch.Tensor:
        """Logits (N, num_classes). If ``st_outputs`` is a dict, each ST's (input, params, output) is stored in it."""
        features = []
        for k, block in enumerate(self.backbone.blocks):
            for st_name in self.sts_at(k):
                st = self.transformers[st_name]
                if st_outputs is None:
                    x = st(x)
                else:
                    params = st.params(x)
                    out = st.warp(x, params)
                    st_outputs[st_name] = (x, params, out)
                    x = out
            x = block(x)
            features.append(x)
        return self.backbone.head(features)
