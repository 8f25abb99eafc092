"""What a run is, as the dashboards show it: its name, tags and the flat config logged once.

The ``identity`` section of ``conf/train.yaml`` holds the experiment (``custom`` for a run composed
on the command line), model, transform, data, image size, seed and, for ``debug=`` runs, the debug
kind. Names read ``<experiment>-<model>-<transform>-<data><size>-s<seed>``, so that recipes never
share a name: ``compact-compact_two_st-affine-gtsrb32-s1``, ``custom-two_st-affine-gtsrb48-s1``.
"""

from __future__ import annotations

from typing import Any

# Keys of the logged config that say how, not what: class paths, and where files lie on this machine.
IMPL_SUFFIXES = ("_target_", "_partial_", "_convert_", "_recursive_")
PATH_KEYS = {"data.root", "data.mirror", "data.path", "run_dir", "resume"}


def identity_of(cfg: dict) -> dict[str, Any]:
    """The run's ``identity`` section (made from its other sections for configs written before it existed)."""
    data = cfg.get("data") or {}
    derived = {
        "experiment": "custom",
        "model": (cfg.get("model") or {}).get("name", "model"),
        "transform": (cfg.get("transform") or {}).get("name", "affine"),
        "data": data.get("name", "gtsrb"),
        "image_size": data.get("image_size"),
        "seed": cfg.get("seed", 0),
        "debug": None,
    }
    return {**derived, **(cfg.get("identity") or {})}


def run_name(cfg: dict) -> str:
    """``<experiment>-<model>-<transform>-<data><size>-s<seed>`` (``-debug_<kind>`` for debug runs)."""
    i = identity_of(cfg)
    name = f"{i['experiment']}-{i['model']}-{i['transform']}-{i['data']}{i['image_size'] or ''}-s{i['seed']}"
    return f"{name}-debug_{i['debug']}" if i.get("debug") else name


def run_tags(cfg: dict) -> list[str]:
    """``experiment:``, ``variant:``, ``transform:``, ``dataset:``, ``size:``, ``seed:`` (``debug``), then ``wandb.tags``."""
    i = identity_of(cfg)
    tags = [
        f"experiment:{i['experiment']}",
        f"variant:{i['model']}",
        f"transform:{i['transform']}",
        f"dataset:{i['data']}",
        f"size:{i['image_size']}",
        f"seed:{i['seed']}",
    ]
    if i.get("debug"):
        tags += ["debug", f"debug:{i['debug']}"]
    return tags + [t for t in ((cfg.get("wandb") or {}).get("tags") or []) if t not in tags]


def flat_config(cfg: dict, prefix: str = "") -> dict[str, Any]:
    """Nested config -> ``{"model.name": ..., "optim.lr": ...}``."""
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_config(v, key + "."))
        else:
            out[key] = v
    return out


def logged_config(cfg: dict, choices: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config as every logger gets it, once: flat keys to filter and group by (``identity.experiment``,
    ``model.name``, ``optim.lr``, ...), Hydra's group choices as ``choices.<group>``, and apart from them
    the class paths (``impl.<key>``) and this machine's paths (``paths.<key>``)."""
    out: dict[str, Any] = {}
    for key, value in flat_config({k: v for k, v in cfg.items() if k != "hydra"}).items():
        if key.endswith(IMPL_SUFFIXES):
            out[f"impl.{key}"] = value
        elif key in PATH_KEYS:
            out[f"paths.{key}"] = value
        else:
            out[key] = value
    out.update(
        {
            f"choices.{group}": choice
            for group, choice in (choices or {}).items()
            if not group.startswith("hydra/") and choice is not None
        }
    )
    return out


def unlogged(config: dict[str, Any]) -> dict[str, Any]:
    """:func:`logged_config` back to plain flat keys (``impl.optim._target_`` -> ``optim._target_``)."""
    return {k.removeprefix("impl.").removeprefix("paths."): v for k, v in config.items()}
