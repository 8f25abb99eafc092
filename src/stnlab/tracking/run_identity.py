"""What a run is, as the dashboards show it: its name, tags and the flat config logged once.

The ``identity`` section of ``conf/train.yaml`` holds the experiment (``custom`` for a run composed
on the command line), the overrides applied on top of it (``modified``), model, transform, data, image
size, seed and, for ``debug=`` runs, the debug kind. Names read
``<experiment>[+modified]-<model>-<transform>-<data><size>-s<seed>``, so that recipes never share a name
with each other or with their modified runs: ``compact-compact_two_st-affine-gtsrb32-s1``,
``compact+modified-compact_two_st-affine-gtsrb32-s5`` (``trainer.max_epochs=1``; runs without a named
experiment stay ``custom``). Runs that differ only by their seed share ``identity.experiment`` and
``identity.modified``, and no other runs do.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from omegaconf import open_dict

# Keys of the logged config that say how, not what: class paths, and where files lie on this machine.
IMPL_SUFFIXES = ("_target_", "_partial_", "_convert_", "_recursive_")
PATH_KEYS = {"data.root", "data.mirror", "data.path", "run_dir", "resume"}


# Overrides that leave what a run learns unchanged: its seed (runs of one recipe differ by it), names and
# debug kinds (identity of their own), where files lie, how it is logged and shown, and the speed switches.
NEUTRAL_KEYS = (
    "seed",
    "experiment",
    "debug",
    "identity",
    "hydra",
    "wandb",
    "logger",
    "paths",
    "run_dir",
    "resume",
    "test",
    "speed",
    "data.root",
    "data.mirror",
    "data.path",
    "data.num_workers",
    "data.download_timeout",
    "data.download_retries",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
    "checkpoint.every_n_train_steps",
)


def override_key(override: str) -> str:
    """``+model.x=1`` -> ``model.x``; ``model@pkg=a`` -> ``model``; ``~augment`` -> ``augment``."""
    return override.split("=", 1)[0].lstrip("+~").split("@", 1)[0].strip()


def modifications(overrides: Sequence[str]) -> list[str]:
    """The overrides that change a run beyond its experiment and seed (not :data:`NEUTRAL_KEYS`), one per key
    (the last, as Hydra applies them), sorted by key: ``["model=compact_no_st", "trainer.max_epochs=1"]``."""
    kept: dict[str, str] = {}
    for override in overrides:
        key = override_key(override)
        if not any(key == n or key.startswith(n + ".") or key.startswith(n + "/") for n in NEUTRAL_KEYS):
            kept[key] = override
    return [kept[k] for k in sorted(kept)]


def mark_modified(cfg, overrides: Sequence[str]) -> None:
    """Record in ``cfg.identity.modified`` (a DictConfig of conf/train.yaml) what ``overrides`` change."""
    with open_dict(cfg):
        cfg.identity.modified = " ".join(modifications(overrides))


def experiment_label(identity: dict[str, Any]) -> str:
    """``compact``, or ``compact+modified`` for a run with overrides beyond its seed. A ``custom`` run (no named
    experiment) is made of overrides by definition: it stays ``custom``, and ``identity.modified`` tells such runs
    apart."""
    modified = identity.get("modified") and identity["experiment"] != "custom"
    return identity["experiment"] + ("+modified" if modified else "")


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
        "modified": None,
    }
    return {**derived, **(cfg.get("identity") or {})}


def run_name(cfg: dict) -> str:
    """``<experiment>[+modified]-<model>-<transform>-<data><size>-s<seed>`` (``-debug_<kind>`` for debug runs)."""
    i = identity_of(cfg)
    name = f"{experiment_label(i)}-{i['model']}-{i['transform']}-{i['data']}{i['image_size'] or ''}-s{i['seed']}"
    return f"{name}-debug_{i['debug']}" if i.get("debug") else name


def run_tags(cfg: dict) -> list[str]:
    """``experiment:`` (``<e>+modified`` when overridden), ``variant:``, ``transform:``, ``dataset:``, ``size:``,
    ``seed:`` (``debug``), then ``wandb.tags``."""
    i = identity_of(cfg)
    tags = [
        f"experiment:{experiment_label(i)}",
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
    the class paths (``impl.<key>``) and this machine's paths, absolute (``paths.<key>``). A node that copies
    a whole section (``logger.wandb.settings: ${wandb}``, ``model.default_transform: ${transform}``) is
    logged once, under that section."""
    out: dict[str, Any] = {}
    for key, value in flat_config(without_copies({k: v for k, v in cfg.items() if k != "hydra"})).items():
        if key.endswith(IMPL_SUFFIXES):
            out[f"impl.{key}"] = value
        elif key in PATH_KEYS or key.startswith("paths."):  # the paths group too: paths.paths.runs_dir
            out[f"paths.{key}"] = absolute(value)
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


def without_copies(cfg: dict) -> dict:
    """``cfg`` without the nested nodes equal to one of its (non-empty) top-level sections."""
    sections = [v for v in cfg.values() if isinstance(v, dict) and v]

    def prune(node: dict, top: bool) -> dict:
        return {
            k: prune(v, False) if isinstance(v, dict) else v
            for k, v in node.items()
            if top or not (isinstance(v, dict) and v in sections)
        }

    return prune(cfg, True)


def absolute(value: Any) -> Any:
    """A relative file path made absolute (a logged ``../shared/gtsrb`` means nothing on the dashboard); URLs,
    ``last`` and empty values as they are."""
    if not isinstance(value, str) or not value or "://" in value or value == "last":
        return value
    return os.path.abspath(os.path.expanduser(value))  # not resolve(): a symlinked data folder keeps its name


def unlogged(config: dict[str, Any]) -> dict[str, Any]:
    """:func:`logged_config` back to plain flat keys (``impl.optim._target_`` -> ``optim._target_``)."""
    return {k.removeprefix("impl.").removeprefix("paths."): v for k, v in config.items()}
