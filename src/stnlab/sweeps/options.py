"""The sweep options (keys of conf/sweep.yaml) apart from the training overrides on ``src/sweep.py``'s command
line. Light (Hydra and OmegaConf only): the split runs before Hydra composes conf/sweep.yaml, for ``--help`` too."""

from __future__ import annotations

import re
from collections.abc import Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from stnlab.config import CONF_DIR
from stnlab.errors import ConfigError

DEFAULTS = CONF_DIR / "sweep.yaml"
PATHS = CONF_DIR / "paths" / "default.yaml"
# Keys of conf/sweep.yaml that are preset tables, not options.
_PRESETS = ("samplers", "pruners")


def sweep_defaults() -> DictConfig:
    """conf/sweep.yaml's keys, without its defaults list (Hydra's: the settings that the apps share), with the
    paths group it composes (``out_dir`` is ``${paths.sweeps_dir}``)."""
    cfg = OmegaConf.load(DEFAULTS)
    cfg.pop("defaults", None)
    return OmegaConf.merge({"paths": OmegaConf.load(PATHS)}, cfg)


def option_keys() -> set[str]:
    """The sweep options: conf/sweep.yaml's keys but its preset tables."""
    return {str(k) for k in sweep_defaults() if k not in _PRESETS}


def split_args(argv: Sequence[str], option_keys: set[str]) -> tuple[list[str], list[str]]:
    """Command-line ``key=value`` -> (sweep options, training overrides), by the top-level key."""
    try:
        parsed = OverridesParser.create().parse_overrides(list(argv))
    except HydraException as e:
        raise ConfigError(f"cannot parse the command line: {e}") from None
    options, overrides = [], []
    for arg, o in zip(argv, parsed):
        is_option = not (o.is_add() or o.is_delete()) and re.split(r"[./]", o.key_or_group)[0] in option_keys
        (options if is_option else overrides).append(arg)
    return options, overrides


def split_command_line(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """``src/sweep.py``'s arguments -> (Hydra's: sweep options, ``hydra.*`` overrides and flags; training overrides).

    Hydra composes conf/sweep.yaml from the first; the trials compose the training config with the second."""
    hydra_args = [a for a in argv if a.startswith("-") or "=" not in a]  # --help, --cfg job, ...
    options, overrides = split_args([a for a in argv if a not in hydra_args], option_keys() | {"hydra"})
    return hydra_args + options, overrides
