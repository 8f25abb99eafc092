"""``python src/visualize.py ckpt=PATH [n=16] [data=synth]``: panels of every ST of a trained network."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from stnlab.errors import ConfigError, StnlabError
from stnlab.viz.panels import panel, panel_grid
from stnlab.viz.trace import trace_sts

log = logging.getLogger(__name__)


def default_out(ckpt: Path) -> Path:
    """``<run dir>/visualize`` for ``<run dir>/checkpoints/x.ckpt``, else beside the checkpoint."""
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    return run_dir / "visualize"


def load_images(module, data_cfg: dict | None, split: str, n: int):
    """The first ``n`` uint8 images of ``split`` from ``data_cfg`` (default: the run's own data config),
    at the image size the network was trained on."""
    cfg = dict(data_cfg or module.cfg["data"])
    cfg["image_size"] = module.cfg["data"]["image_size"]
    datamodule = instantiate(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    data = getattr(datamodule, split, None)
    if data is None or len(data) == 0:
        raise ConfigError(f"split={split} has no images in data '{cfg.get('name')}'; use split=val or split=train")
    return data.images[:n]


def visualize(cfg: DictConfig) -> list[Path]:
    """Write one PNG grid per ST (and, with ``per_image``, one PNG per image). Returns the paths written."""
    from stnlab.training.module import STNModule

    if cfg.split not in ("train", "val", "test"):
        raise ConfigError(f"split={cfg.split} is not a split; use train, val or test")
    ckpt = Path(str(cfg.ckpt)).expanduser()
    if not ckpt.is_file():
        raise ConfigError(f"ckpt={ckpt} is not a file; pass ckpt=PATH to a run's checkpoint "
                          "(outputs/runs/<date>/<time>-<model>/checkpoints/last.ckpt)")
    try:
        module = STNModule.load_from_checkpoint(ckpt, map_location="cpu")
    except (KeyError, RuntimeError, EOFError) as e:
        raise ConfigError(f"ckpt={ckpt} is not an stnlab checkpoint ({type(e).__name__}: {e}); "
                          "pass one written by src/train.py") from None
    if not module.net.transformers:
        raise StnlabError(f"the network in {ckpt} ('{module.cfg['model'].get('name')}') has no spatial transformer; "
                          "pick a checkpoint of an ST model")
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True) if cfg.get("data") else None
    images = load_images(module, data_cfg, cfg.split, int(cfg.n))
    out = Path(cfg.out) if cfg.get("out") else default_out(ckpt)
    out.mkdir(parents=True, exist_ok=True)
    written = []
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
