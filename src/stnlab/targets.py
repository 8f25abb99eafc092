"""The part of ``hydra.utils.instantiate`` that stnlab's configs use, for machines without hydra-core.

``{"_target_": "pkg.mod.Name", "_partial_": true, **kwargs}`` -> ``Name(**kwargs)`` (or a
``functools.partial`` of it), nested dicts and lists first; other ``_..._`` keys are ignored.
``stnlab.training.module`` falls back to it where hydra-core is not installed (``src/bench.py``
on a GPU machine); everywhere else Hydra's own ``instantiate`` runs.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any


class InstantiationException(Exception):
    pass


def locate(path: str):
    """``"torch.optim.SGD"`` -> the object, importing the longest module prefix."""
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise InstantiationException(f"cannot locate _target_ {path!r}")


def instantiate(config: Any, *args, **kwargs) -> Any:
    kwargs = {k: v for k, v in kwargs.items() if not (k.startswith("_") and k.endswith("_"))}
    if isinstance(config, list):
        return [instantiate(v) for v in config]
    if not isinstance(config, dict):
        return config
    values = {k: instantiate(v) for k, v in config.items() if not (k.startswith("_") and k.endswith("_"))}
    if "_target_" not in config:
        return values
    target = locate(config["_target_"])
    values.update(kwargs)
    if config.get("_partial_"):
        return functools.partial(target, *args, **values)
    try:
        return target(*args, **values)
    except Exception as e:
        raise InstantiationException(f"error instantiating {config['_target_']!r}: {e}") from e
