"""Checkpoints and their data: the one loader of trained modules (evaluate, robustness, visualize, predict).

A checkpoint describes itself: ``hyper_parameters.cfg`` is the resolved run config, from which
``build_module`` rebuilds the module before the weights are loaded.

The data module is the checkpoint's own ``cfg["data"]`` (instantiated with Hydra), so
a model is evaluated on the images it was trained for. Command-line overrides
(``data.mirror=...``) beat everything; the stored ``mirror`` and ``root`` are kept while
they exist here, else the environment's ``GTSRB_MIRROR`` / ``STNLAB_DATA_DIR`` (as
``conf/data/gtsrb.yaml`` reads them) stand in: a checkpoint from another machine, or
one trained from the official server, then reads the local archives.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate

from stnlab.data.gtsrb import Split
from stnlab.errors import ConfigError, StnlabError

SPLITS = ("train", "val", "test")
ENV_KEYS = {"mirror": "GTSRB_MIRROR", "root": "STNLAB_DATA_DIR"}


class CheckpointError(StnlabError):
    """A checkpoint path is missing or not an stnlab checkpoint."""


def pick_device(name: str | None = "auto") -> torch.device:
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device={name} is not a device; use auto, cpu or cuda (cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name}: no CUDA GPU is usable here; use device=cpu (or auto)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device={name}: this machine has {torch.cuda.device_count()} GPU(s); use cuda:0..")
    return device


def resolve_checkpoint(path: Path | str) -> Path:
    """``ckpt=`` as given: a checkpoint file, or a run folder (or its ``checkpoints/``), which means the run's
    chosen checkpoint (``best_checkpoint`` of its metrics.json, else its latest ``best-*.ckpt``, else the
    last epoch's); a CheckpointError that says what to pass otherwise."""
    path = Path(path).expanduser()
    if path.is_file():
        return path
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    if path.is_dir() and folder.name == "checkpoints":
        chosen = _chosen_in(folder)
        if chosen is not None:
            return chosen
        raise CheckpointError(f"{folder} holds no .ckpt file; pass ckpt= a checkpoint file or a finished run's folder")
    if path.is_dir():
        raise CheckpointError(
            f"{path} is a folder without checkpoints/; pass ckpt= a run folder (outputs/runs/<date>/<time>-<model>) "
            "or a checkpoint file"
        )
    raise CheckpointError(
        f"checkpoint {path} not found; pass ckpt= a run folder (outputs/runs/<date>/<time>-<model>) or a file in "
        "its checkpoints/ (best-*.ckpt, last.ckpt)"
    )


def _chosen_in(folder: Path) -> Path | None:
    try:
        recorded = json.loads((folder.parent / "metrics.json").read_text()).get("best_checkpoint")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if recorded and (folder / Path(recorded).name).is_file():
        return folder / Path(recorded).name
    for pattern in ("best-*.ckpt", "epoch-*.ckpt", "last.ckpt"):
        found = sorted(folder.glob(pattern))
        if found:
            return found[-1]
    return None


def read_checkpoint(path: Path | str) -> dict:
    """The checkpoint's dict (on the CPU), or a CheckpointError naming the fix."""
    path = resolve_checkpoint(path)
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - a text file, an empty one, a foreign pickle: all the user's to replace
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(
            f"{path} is not an stnlab checkpoint ({type(e).__name__}: {first}); pass one written by src/train.py"
        ) from None
    cfg = (saved.get("hyper_parameters") or {}).get("cfg") if isinstance(saved, dict) else None
    if not isinstance(cfg, dict) or "model" not in cfg or "state_dict" not in saved:
        raise CheckpointError(
            f"{path} is not an stnlab checkpoint (no run config or weights in it); pass one written by src/train.py"
        )
    return saved


def upgrade_config(cfg: dict) -> dict:
    """The run config of a checkpoint written before the module was built from its parts (no ``module`` node):
    the same run in today's layout. Such runs normalised with the ``floored`` contrast normalisation."""
    if "module" in cfg:
        return cfg
    cfg = {**cfg, "model": dict(cfg["model"]), "data": {"num_classes": 43, **cfg["data"]}}
    scale = cfg["model"].pop("locnet_lr_scale", 1.0)
    cfg["model"].setdefault("default_transform", cfg.get("transform"))
    cfg["model"].setdefault("num_classes", 43)
    scheduler = dict(cfg.get("scheduler") or {})
    interval, monitor = scheduler.pop("interval", "epoch"), scheduler.pop("monitor", "val/acc")
    cfg["scheduler"] = scheduler or None
    cfg["normalize"] = {
        "variant": "floored",
        "_target_": "stnlab.data.normalize.InputNormalizer",
        "channels": cfg["model"].get("in_channels", 3),
        **(cfg.get("normalize") or {}),
    }
    cfg["module"] = {
        "_target_": "stnlab.training.STNModule",
        "locnet_lr_scale": scale,
        "label_smoothing": (cfg.get("loss") or {}).get("label_smoothing", 0.0),
        "scheduler_interval": interval,
        "scheduler_monitor": monitor,
    }
    return cfg


def load_module(ckpt: Path | str, device: torch.device | str = "cpu"):
    """The ``STNModule`` a checkpoint holds, rebuilt from its own run config, in eval mode on ``device``."""
    saved = read_checkpoint(ckpt)
    from stnlab.training.module import build_module  # the training stack, only when a module is wanted

    module = build_module(upgrade_config(saved["hyper_parameters"]["cfg"]))
    module.load_state_dict(saved["state_dict"])
    return module.to(device).eval()


def _present(location: Any) -> bool:
    """A stored mirror or root that can be used here: a URL, or a folder that exists."""
    text = str(location or "")
    return text.startswith(("http://", "https://")) or (bool(text) and Path(text).expanduser().is_dir())


def data_config(cfg: dict, overrides: dict[str, Any] | None = None) -> dict:
    """The checkpoint's ``data`` section, with the environment's locations where the stored ones are missing
    and ``overrides`` (``{"image_size": 32}``) applied."""
    data = dict(cfg["data"])
    for key, env in ENV_KEYS.items():
        if key in data and os.environ.get(env) and not _present(data[key]):
            data[key] = os.environ[env]
    for key, value in (overrides or {}).items():
        data[key] = value
    size = cfg["model"].get("image_size")
    if size is not None and int(data.get("image_size", size)) != int(size):
        raise ConfigError(
            f"data.image_size={data['image_size']} differs from the model's {size}; "
            "drop the override (the network is built for its training size)"
        )
    return data


_DATA_CACHE: dict[str, Any] = {}


def load_split(data_cfg: dict, split: str) -> Split:
    """``split`` ('train', 'val' or 'test') of the data module that ``data_cfg`` describes (kept per config)."""
    if split not in SPLITS:
        raise ConfigError(f"split={split} is not one of {', '.join(SPLITS)}")
    key = json.dumps(data_cfg, sort_keys=True, default=str)
    dm = _DATA_CACHE.get(key)
    if dm is None:
        dm = instantiate(data_cfg)
        dm.prepare_data()
        dm.setup("test")
        _DATA_CACHE.clear()  # one data set in memory at a time
        _DATA_CACHE[key] = dm
    out = getattr(dm, split)
    if out is None or len(out) == 0:
        raise ConfigError(
            f"the {split} split of data={data_cfg.get('name', '?')} is empty or has no labels; use split=val"
        )
    return out
