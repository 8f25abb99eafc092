"""Checking the keys of the query-time apps' Hydra configs (``conf/{predict,export,serve}.yaml``)."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from stnlab.errors import ConfigError
from stnlab.evaluation.args import wandb_mode


def required(cfg: DictConfig, key: str, hint: str) -> str:
    """``cfg[key]`` as a string; a one-line :class:`ConfigError` with ``hint`` when it is ``???`` or empty."""
    if OmegaConf.is_missing(cfg, key) or cfg.get(key) in (None, ""):
        raise ConfigError(f"{key}= is required; pass {key}={hint}")
    return str(cfg[key])


def positive_int(cfg: DictConfig, key: str) -> int:
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}={value}: expected a positive integer")
    return value


def wandb(cfg: DictConfig) -> str | None:
    """``wandb=`` as a W&B mode: 'disabled', None (offline unless $WANDB_MODE says otherwise), 'offline', 'online'."""
    try:
        return wandb_mode(str(cfg.get("wandb", False)))
    except ValueError as e:
        raise ConfigError(f"wandb={cfg.get('wandb')}: {e}") from None
