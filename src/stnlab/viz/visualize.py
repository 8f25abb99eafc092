"""The images and words of ``src/visualize.py``'s panels: images spread over the classes, grid titles."""

from __future__ import annotations

import torch

from stnlab.training.checkpoints import config_of, data_config, load_split


def spread_over_classes(labels: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of ``n`` images spread over the classes: one per class while ``n`` allows (classes evenly spaced
    when there are more than ``n``), then a second, ...; within a class, images far apart (other tracks than
    the first). Ordered so that each row of a grid shows different classes."""
    classes = labels.unique(sorted=True)
    if n <= len(classes):
        classes = classes[torch.linspace(0, len(classes) - 1, n).round().long().unique()]
    per_class = -(-n // len(classes))
    picks = []
    for c in classes:
        members = torch.nonzero(labels == c).flatten()
        q = min(per_class, len(members))
        positions = ((torch.arange(q) + 0.5) * len(members) / q).long()
        picks += [(rank, int(c), int(members[p])) for rank, p in enumerate(positions)]
    return torch.tensor([i for _, _, i in sorted(picks)][:n], dtype=torch.long)


def load_images(module, data_cfg: dict | None, split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` uint8 images of ``split`` spread over its classes, and their labels, from ``data_cfg`` (default: the
    run's own data config) at the image size the network was trained on."""
    cfg = dict(data_cfg) if data_cfg else data_config(module.cfg)
    cfg["image_size"] = config_of(module).image_size
    images = load_split(cfg, split)
    index = spread_over_classes(images.labels, n)
    return images.images[index], images.labels[index]


def grid_text(view, run: str, split: str, labels: torch.Tensor) -> tuple[str, str]:
    """The title and legend of an ST's grid: which ST of which run, on what images; what the panels show."""
    kind = "input ST" if view.position == 0 else f"ST after conv block {view.position}, drawn on the image"
    classes = len(labels.unique())
    title = f"ST '{view.name}' ({kind}) of {run}: {len(labels)} {split} images of {classes} classes"
    legend = (
        "Each panel: left, the ST's input on a grey margin with the region it samples outlined in green; "
        "right, the ST's output. Under it: the image's class."
    )
    return title, legend
