"""Checking the keys of the query-time apps' Hydra configs (``conf/{predict,export,serve}.yaml``), with the
value checks every entry point shares (:mod:`stnlab.cli.checks`)."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from stnlab.cli import checks
from stnlab.errors import ConfigError


def required(cfg: DictConfig, key: str, hint: str) -> str:
    """``cfg[key]`` as a string; a one-line :class:`ConfigError` with ``hint`` when it is ``???`` or empty."""
    if OmegaConf.is_missing(cfg, key) or cfg.get(key) in (None, ""):
        raise ConfigError(f"{key}= is required; pass {key}={hint}")
    return str(cfg[key])


def positive_int(cfg: DictConfig, key: str) -> int:
    return checks.positive_int(key, cfg.get(key))


def wandb(cfg: DictConfig) -> str | None:
    """``wandb=`` as a W&B mode: 'disabled', None (offline unless $WANDB_MODE says otherwise), 'offline', 'online'."""
    return checks.wandb_mode("wandb", cfg.get("wandb", False))
