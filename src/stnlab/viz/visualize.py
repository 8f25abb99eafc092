"""``python src/visualize.py ckpt=PATH [n=16] [data=synth]``: panels of every ST of a trained network."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from stnlab.checkpoints import data_config, load_module, load_split
from stnlab.errors import ConfigError, StnlabError
from stnlab.evaluation.files import writing_into
from stnlab.run_dirs import run_dir_of_checkpoint
from stnlab.viz.panels import panel, panel_grid
from stnlab.viz.trace import trace_sts

log = logging.getLogger(__name__)


def load_images(module, data_cfg: dict | None, split: str, n: int):
    """The first ``n`` uint8 images of ``split`` from ``data_cfg`` (default: the run's own data config),
    at the image size the network was trained on."""
    cfg = dict(data_cfg) if data_cfg else data_config(module.cfg)
    cfg["image_size"] = module.cfg["data"]["image_size"]
    return load_split(cfg, split).images[:n]


def visualize(cfg: DictConfig) -> list[Path]:
    """Write one PNG grid per ST (and, with ``per_image``, one PNG per image). Returns the paths written."""
    if cfg.split not in ("train", "val", "test"):
        raise ConfigError(f"split={cfg.split} is not a split; use train, val or test")
    ckpt = Path(str(cfg.ckpt)).expanduser()
    if not ckpt.is_file():
        raise ConfigError(
            f"ckpt={ckpt} is not a file; pass ckpt=PATH to a run's checkpoint "
            "(outputs/runs/<date>/<time>-<model>/checkpoints/last.ckpt)"
        )
    module = load_module(ckpt)
    if not module.net.transformers:
        raise StnlabError(
            f"the network in {ckpt} ('{module.cfg['model'].get('name')}') has no spatial transformer; "
            "pick a checkpoint of an ST model"
        )
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True) if cfg.get("data") else None
    images = load_images(module, data_cfg, cfg.split, int(cfg.n))
    out = Path(cfg.out) if cfg.get("out") else run_dir_of_checkpoint(ckpt) / "visualize"
    written = []
    with writing_into(out):
        for view in trace_sts(module, images):
            path = out / f"{view.name}.png"
            panel_grid(view, int(cfg.cols), int(cfg.scale)).save(path)
            written.append(path)
            if cfg.get("per_image"):
                (out / view.name).mkdir(exist_ok=True)
                for i in range(len(images)):
                    p = out / view.name / f"{i:03d}.png"
                    panel(view, i, int(cfg.scale)).save(p)
                    written.append(p)
    log.info("wrote %d panel file(s) to %s", len(written), out)
    print("\n".join(str(p) for p in written if p.parent == out))
    return written
