"""``python src/visualize.py ckpt=PATH [n=16] [data=synth]``: panels of every ST of a trained network."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from stnlab.training.checkpoints import data_config, load_module, load_split, resolve_checkpoint
from stnlab.data.classes import class_names
from stnlab.errors import ConfigError, StnlabError
from stnlab.evaluation.files import writing_into
from stnlab.run_dirs import run_dir_of_checkpoint
from stnlab.tracking.run_identity import run_name
from stnlab.viz.panels import labelled_grid, panel, save_png
from stnlab.viz.trace import trace_sts

log = logging.getLogger(__name__)


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
    cfg["image_size"] = module.cfg["data"]["image_size"]
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


def visualize(cfg: DictConfig) -> list[Path]:
    """Write one PNG grid per ST (and, with ``per_image``, one PNG per image). Returns the paths written."""
    if cfg.split not in ("train", "val", "test"):
        raise ConfigError(f"split={cfg.split} is not a split; use train, val or test")
    ckpt = resolve_checkpoint(str(cfg.ckpt))
    module = load_module(ckpt)
    if not module.net.transformers:
        raise StnlabError(
            f"the network in {ckpt} ('{module.cfg['model'].get('name')}') has no spatial transformer; "
            "pick a checkpoint of an ST model"
        )
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True) if cfg.get("data") else None
    images, labels = load_images(module, data_cfg, cfg.split, int(cfg.n))
    names = class_names(module.num_classes)
    captions = [f"{int(c)} {names[int(c)]}" for c in labels]
    out = Path(cfg.out) if cfg.get("out") else run_dir_of_checkpoint(ckpt) / "visualize"
    written = []
    with writing_into(out):
        for view in trace_sts(module, images):
            title, legend = grid_text(view, run_name(module.cfg), cfg.split, labels)
            written.append(
                save_png(
                    labelled_grid(view, captions, title, legend, int(cfg.cols), int(cfg.scale)),
                    out / f"{view.name}.png",
                )
            )
            if cfg.get("per_image"):
                (out / view.name).mkdir(exist_ok=True)
                for i in range(len(images)):
                    p = out / view.name / f"{i:03d}.png"
                    panel(view, i, int(cfg.scale)).save(p)
                    written.append(p)
    log.info("wrote %d panel file(s) to %s", len(written), out)
    print("\n".join(str(p) for p in written if p.parent == out))
    return written
