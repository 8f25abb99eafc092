"""Run configs for the benchmark: Hydra's compose where hydra-core is installed, else plain YAML.

The YAML path (GPU machines without hydra-core/omegaconf) reads ``conf/train.yaml``'s defaults
list, merges each group's file at its ``# @package`` (default: the group), then the model
preset, and resolves ``${a.b}`` references; ``${oc.env:...}`` become null. It builds the same
network as Hydra for every ``conf/model`` preset (tests/test_bench.py checks this).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

CONF = Path(__file__).resolve().parents[3] / "conf"
_REF = re.compile(r"\$\{([^}]+)\}")


def model_presets(conf: Path = CONF) -> list[str]:
    return sorted(p.stem for p in (conf / "model").glob("*.yaml"))


def run_config(overrides: list[str], conf: Path = CONF, use_hydra: bool | None = None) -> dict[str, Any]:
    """The resolved run config (a plain dict) of ``src/train.py <overrides>``; overrides are ``key=value``."""
    if use_hydra is None:
        try:
            import hydra  # noqa: F401
        except ImportError:
            use_hydra = False
        else:
            use_hydra = True
    return _hydra_config(overrides, conf) if use_hydra else _yaml_config(overrides, conf)


def _hydra_config(overrides: list[str], conf: Path) -> dict[str, Any]:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def _load(path: Path) -> tuple[dict, str | None]:
    text = path.read_text()
    m = re.search(r"^#\s*@package\s+(\S+)", text, re.M)
    return yaml.safe_load(text) or {}, m.group(1) if m else None


def _merge(dst: dict, src: dict) -> dict:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = copy.deepcopy(v)
    return dst


def _at(cfg: dict, dotted: str, create: bool = False):
    node = cfg
    for part in dotted.split(".") if dotted else []:
        if create:
            node = node.setdefault(part, {})
        else:
            node = node[part]
    return node


def _resolve(node: Any, root: dict) -> Any:
    if isinstance(node, dict):
        return {k: _resolve(v, root) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, root) for v in node]
    if isinstance(node, str):
        m = _REF.fullmatch(node)
        if m:
            ref = m.group(1)
            return None if ":" in ref else _resolve(_at(root, ref), root)
    return node


def _preset_overrides(defaults: list, pairs: dict[str, str], conf: Path) -> dict[str, str]:
    """``{group: choice}`` from ``- override /group...: choice`` entries in the chosen group files
    (conf/model/compact_*.yaml choose their backbone); the command line's choices win."""
    chosen: dict[str, str] = {}
    for entry in defaults:
        if entry == "_self_":
            continue
        (group, choice), = entry.items()
        group = group.split()[-1]
        choice = pairs.get(group, choice)
        path = conf / group / f"{choice}.yaml"
        if choice is None or not path.is_file():
            continue
        for sub in (yaml.safe_load(path.read_text()) or {}).get("defaults", []):
            if isinstance(sub, dict):
                (key, value), = sub.items()
                m = re.fullmatch(r"override /(\w+)(@\S+)?", key)
                if m and m.group(1) not in pairs:
                    chosen[m.group(1)] = value
    return chosen


def _yaml_config(overrides: list[str], conf: Path) -> dict[str, Any]:
    pairs = dict(o.split("=", 1) for o in overrides)
    root, _ = _load(conf / "train.yaml")
    defaults = root.pop("defaults", [])
    root.pop("hydra", None)
    chosen = _preset_overrides(defaults, pairs, conf)
    cfg: dict = {}
    for entry in defaults:
        if entry == "_self_":
            _merge(cfg, root)
            continue
        (group, choice), = entry.items()
        if group.startswith("optional "):
            group = group.split()[1]
        choice = pairs.pop(group, chosen.get(group, choice))
        if choice is None:
            continue
        body, package = _load(conf / group / f"{choice}.yaml")
        body.pop("defaults", None)
        package = group if package is None else ("" if package == "_global_" else package)
        if package:
            parent, _, leaf = package.rpartition(".")
            _merge(_at(cfg, parent, create=True).setdefault(leaf, {}), body)
        else:
            _merge(cfg, body)
    for key, value in pairs.items():
        parent, _, leaf = key.lstrip("+").rpartition(".")
        _at(cfg, parent, create=True)[leaf] = yaml.safe_load(value)
    return _resolve(cfg, cfg)
