"""The configs of ``conf/``, composed by Hydra as the command lines compose them.

``compose_train(overrides)`` is the run config that ``python src/train.py <overrides>`` gets (without
its ``hydra`` node): the sweep trials, the benchmark and the tests build their runs from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from hydra.initialize import get_gh_backup, restore_gh_from_backup
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from stnlab.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def message_line(e: BaseException) -> str:
    """An exception's message on one line: Hydra's span several (the problem, a list of options, a hint)."""
    text = str(e).split("Config search path:")[0]  # Hydra's list of folders searched: noise for the user
    out = ""
    listing = False  # after "Available options in 'model':", one option per line
    for line in filter(None, map(str.strip, text.splitlines())):
        sep = "" if not out else ", " if listing and not out.endswith(":") else " " if out[-1] in ".:!?" else "; "
        out += sep + line
        listing = listing or line.endswith(":")
    return out[:600] or type(e).__name__


def compose(config_name: str, overrides: Sequence[str] = (), conf_dir: Path | None = None) -> DictConfig:
    """``<conf_dir>/<config_name>.yaml`` with ``overrides`` applied (``conf_dir`` defaults to the checkout's
    ``conf/``; a sweep passes its study's snapshot); overrides that do not compose raise a ConfigError."""
    try:
        if conf_dir is None and GlobalHydra.instance().is_initialized():  # in a running app: its path is conf/
            return hydra_compose(config_name=config_name, overrides=list(overrides))
        # Inside a running app (a sweep composing from its study's snapshot), the app's Hydra is set aside
        # and put back afterwards.
        backup = get_gh_backup()
        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(config_dir=str(Path(conf_dir or CONF_DIR).resolve()), version_base="1.3"):
                return hydra_compose(config_name=config_name, overrides=list(overrides))
        finally:
            restore_gh_from_backup(backup)
    except (HydraException, OmegaConfBaseException) as e:
        given = " ".join(overrides)
        raise ConfigError(f"overrides {given} of conf/{config_name}.yaml do not compose: {message_line(e)}") from None


def compose_train(overrides: Sequence[str] = (), conf_dir: Path | None = None) -> DictConfig:
    """The run config of ``python src/train.py <overrides>`` (composed from ``conf_dir`` when given)."""
    return compose("train", overrides, conf_dir)


def group_options(group: str) -> list[str]:
    """The options of a config group: ``group_options("model")`` -> ``["compact_conv_st", ..., "two_st"]``."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
