"""Show what every ST of a trained network does: ``python src/visualize.py ckpt=PATH [n=16] [data=synth]``."""

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from stnlab.config import checks
from stnlab.errors import StnlabError
from stnlab.evaluation.files import writing_into
from stnlab.run_dirs import run_dir_of_checkpoint
from stnlab.tracking.run_identity import run_name
from stnlab.training.checkpoints import config_of, load_module, resolve_checkpoint
from stnlab.viz.panels import labelled_grid, panel, save_png
from stnlab.viz.trace import trace_sts
from stnlab.viz.visualize import grid_text, load_images

log = logging.getLogger(__name__)


def visualize(cfg: DictConfig) -> list[Path]:
    """Write one PNG grid per ST (and, with ``per_image``, one PNG per image). Returns the paths written."""
    checks.one_of("split", cfg.split, ("train", "val", "test"))
    ckpt = resolve_checkpoint(str(cfg.ckpt))
    module = load_module(ckpt)
    if not module.net.transformers:
        raise StnlabError(
            f"the network in {ckpt} ('{config_of(module).model}') has no spatial transformer; "
            "pick a checkpoint of an ST model"
        )
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True) if cfg.get("data") else None
    images, labels = load_images(module, data_cfg, cfg.split, int(cfg.n))
    names = config_of(module).class_names
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
