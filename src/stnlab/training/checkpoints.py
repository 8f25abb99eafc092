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

import contextlib
import dataclasses
import importlib
import json
import os
import pickle
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate

from stnlab.data.classes import NUM_CLASSES, class_names
from stnlab.data.gtsrb import Split
from stnlab.errors import ConfigError, StnlabError, described
from stnlab.training.module import build_module

SPLITS = ("train", "val", "test")
ENV_KEYS = {"mirror": "GTSRB_MIRROR", "root": "STNLAB_DATA_DIR"}


# Where the classes a checkpoint's run config names (``_target_``) may come from: the network, its optimizer and
# schedule, jitter, normalisation and data are rebuilt by instantiating that config.
TARGET_PACKAGES = ("stnlab.", "torch.optim.")
REBUILT = ("model", "optim", "scheduler", "augment", "normalize", "module", "data")  # the sections instantiated


class CheckpointError(StnlabError):
    """A checkpoint path is missing or not an stnlab checkpoint."""


def load_checkpoint_file(path: Path | str, mmap: bool = False) -> Any:
    """``torch.load`` of a checkpoint on the CPU; raises what torch raises. As data only (``weights_only``): tensors
    and plain containers are built, any other Python object refused, so a crafted file's payload never runs."""
    return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def load_failure(path: Path | str, error: BaseException) -> str:
    """Why ``path`` did not load, in a few words: not torch's format, the objects a pickle would build, or torch's
    first line."""
    if not zipfile.is_zipfile(path):  # every checkpoint torch (and so Lightning) writes is a zip archive
        return "not a PyTorch checkpoint file"
    if isinstance(error, pickle.UnpicklingError):
        with contextlib.suppress(Exception):  # the scan reads opcodes, it runs nothing
            names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
            if names:
                return (
                    f"it would build Python objects ({', '.join(names[:3])}), which could run code and are never loaded"
                )
    return described(error, 200)


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
    if path.is_dir():
        folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        if folder.name != "checkpoints":
            raise CheckpointError(
                f"{path} is a folder without checkpoints/; pass ckpt= a run folder (outputs/runs/<date>/<time>-<model>) "
                "or a checkpoint file"
            )
        path = _chosen_in(folder)
        if path is None:
            raise CheckpointError(
                f"{folder} holds no .ckpt file; pass ckpt= a checkpoint file or a finished run's folder"
            )
    if path.is_file():
        return path
    if path.exists():  # a FIFO or a device, given or chosen: reading it could block or never end
        raise CheckpointError(
            f"checkpoint {path} is not a regular file; pass ckpt=<run_dir>/checkpoints/best-*.ckpt or last.ckpt"
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
    path = resolve_checkpoint(path)  # a regular file, or a CheckpointError
    try:
        saved = load_checkpoint_file(path)
    except Exception as e:  # noqa: BLE001 - a text file, an empty one, a foreign pickle: all the user's to replace
        raise CheckpointError(
            f"{path} is not an stnlab checkpoint ({load_failure(path, e)}); pass one written by src/train.py"
        ) from None
    cfg = (saved.get("hyper_parameters") or {}).get("cfg") if isinstance(saved, dict) else None
    if not isinstance(cfg, dict) or "model" not in cfg or "state_dict" not in saved:
        raise CheckpointError(
            f"{path} is not an stnlab checkpoint (no run config or weights in it); pass one written by src/train.py"
        )
    for section in REBUILT:
        check_targets(cfg.get(section), path, f"cfg.{section}")
    return saved


def check_targets(node: Any, path: Path, where: str) -> None:
    """Every ``_target_`` in a checkpoint's run config names a class of :data:`TARGET_PACKAGES`: the config is
    instantiated to rebuild the module and its data, so a function there (``os.system``) would run code."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            check_targets(item, path, f"{where}[{i}]")
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key == "_target_" and not _is_allowed_class(value):
            raise CheckpointError(
                f"{path} is not an stnlab checkpoint: its config names {where}._target_={value}, not a class of "
                f"{' or '.join(p.rstrip('.') for p in TARGET_PACKAGES)}; pass one written by src/train.py"
            )
        check_targets(value, path, f"{where}.{key}")


def _is_allowed_class(target: Any) -> bool:
    if not isinstance(target, str) or not target.startswith(TARGET_PACKAGES):
        return False  # checked before importing anything it names
    module, _, name = target.rpartition(".")
    try:
        return isinstance(getattr(importlib.import_module(module), name), type)
    except (ImportError, AttributeError, ValueError):  # no such module or name
        return False


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    """What the readers of a trained module need from its run config, read in one place (:meth:`of`)."""

    model: str | None  # model.name: the variant (two_st, no_st, ...)
    transform: str | None  # transform.name: the STs' default transform
    data: str  # data.name
    image_size: int  # the side of the network's input images, in pixels
    num_classes: int
    class_names: tuple[str, ...]  # one per class, by class id
    crop_roi: bool  # trained on images cropped to the sign's region

    @classmethod
    def of(cls, cfg: dict, saved_names: Sequence[str] | None = None) -> CheckpointConfig:
        """The view of a run config (today's layout: :func:`upgrade_config`) and the class names its checkpoint
        saved (older checkpoints: the data's, else GTSRB's for 43 classes, else ``class <id>``)."""
        data, model = cfg.get("data") or {}, cfg.get("model") or {}
        num_classes = int(model.get("num_classes") or data.get("num_classes") or NUM_CLASSES)
        names = saved_names or data.get("class_names")
        if not names or len(names) != num_classes:
            names = class_names(num_classes)
        return cls(
            model=model.get("name"),
            transform=(cfg.get("transform") or {}).get("name"),
            data=str(data.get("name", "gtsrb")),
            image_size=int(data.get("image_size") or model["image_size"]),
            num_classes=num_classes,
            class_names=tuple(str(n) for n in names),
            crop_roi=bool(data.get("crop_roi")),
        )


def config_of(module) -> CheckpointConfig:
    """The typed view of a module's run config, with the class names its checkpoint saved (or its data had)."""
    return CheckpointConfig.of(module.cfg, getattr(module, "class_names", None))


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
    try:
        module = build_module(upgrade_config(saved["hyper_parameters"]["cfg"]))
        module.load_state_dict(saved["state_dict"])
        module.class_names = (saved.get("stnlab") or {}).get("class_names")
    except (StnlabError, RuntimeError, ValueError, TypeError, KeyError, AttributeError) as e:
        # An edited config, or weights of another network under this config: nothing to rebuild it from.
        raise CheckpointError(
            f"{ckpt}: its run config does not fit its weights ({_mismatch_line(e)}); the file was altered: pass one "
            "written by src/train.py"
        ) from None
    return module.to(device).eval()


def _mismatch_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    # torch's load_state_dict lists every mismatch: "Error(s) in loading state_dict ...:" then one per line.
    text = lines[1] if len(lines) > 1 and lines[0].endswith(":") else (lines[0] if lines else type(error).__name__)
    return text[:200]


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
