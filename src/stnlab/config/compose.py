"""The configs of ``conf/``, composed by Hydra as the command lines compose them.

``compose_train(overrides)`` is the run config that ``python src/train.py <overrides>`` gets (without
its ``hydra`` node): the sweep trials, the benchmark and the tests build their runs from it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from hydra.initialize import get_gh_backup, restore_gh_from_backup
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from stnlab.errors import ConfigError
from stnlab.run_dirs import register_resolvers
from stnlab.tracking.run_identity import mark_modified

CONF_DIR = Path(__file__).resolve().parents[3] / "conf"


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


@contextlib.contextmanager
def _hydra_at(conf_dir: Path | None) -> Iterator[None]:
    """Hydra set up on ``conf_dir`` (default: the checkout's ``conf/``, or a running app's own search path)."""
    if conf_dir is None and GlobalHydra.instance().is_initialized():  # in a running app: its path is conf/
        yield
        return
    # Inside a running app (a sweep composing from its study's snapshot), the app's Hydra is set aside and put
    # back afterwards.
    backup = get_gh_backup()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(Path(conf_dir or CONF_DIR).resolve()), version_base="1.3"):
            yield
    finally:
        restore_gh_from_backup(backup)


def compose(config_name: str, overrides: Sequence[str] = (), conf_dir: Path | None = None) -> DictConfig:
    """``<conf_dir>/<config_name>.yaml`` with ``overrides`` applied (a sweep passes its study's snapshot as
    ``conf_dir``); a ConfigError when they do not compose."""
    try:
        with _hydra_at(conf_dir):
            return hydra_compose(config_name=config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as e:
        given = " ".join(overrides)
        raise ConfigError(f"overrides {given} of conf/{config_name}.yaml do not compose: {message_line(e)}") from None


def config_files(
    config_name: str, overrides: Sequence[str] = (), conf_dir: Path | None = None
) -> list[tuple[str, str]]:
    """The files that ``compose(config_name, overrides)`` merges, in order, as ``(config path, package)``:
    ``("data/gtsrb", "data")``, ``("backbone/idsia", "model.backbone")``, ``("experiment/compact", "")``.
    Hydra's own (``hydra/...``) are left out."""
    with _hydra_at(conf_dir):
        loader = GlobalHydra.instance().config_loader()
        found = loader.compute_defaults_list(config_name, list(overrides), RunMode.RUN).defaults
    return [
        (d.config_path, d.package or "")
        for d in found
        if d.config_path and not d.config_path.startswith("hydra/") and d.config_path != "_dummy_empty_config_"
    ]


def compose_train(overrides: Sequence[str] = (), conf_dir: Path | None = None) -> DictConfig:
    """The run config of ``python src/train.py <overrides>`` (composed from ``conf_dir`` when given), with
    ``identity.modified`` saying which of ``overrides`` change the run beyond its experiment and seed."""
    register_resolvers()  # ${stnlab.run_dir:...} and the others of conf/train.yaml's hydra node
    cfg = compose("train", overrides, conf_dir)
    mark_modified(cfg, overrides)
    return cfg


def group_options(group: str) -> list[str]:
    """The options of a config group: ``group_options("model")`` -> ``["compact_conv_st", ..., "two_st"]``."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
