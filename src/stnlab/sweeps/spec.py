"""A sweep spec: conf/sweep.yaml defaults <- sweeps/NAME.yaml <- command-line sweep options.

``load(argv)`` splits the command line into sweep options (keys of conf/sweep.yaml) and
training overrides (everything else), and returns the validated ``SweepSpec`` with them.
The split itself is ``stnlab.sweeps.options`` (``src/sweep.py`` makes it before Hydra composes conf/sweep.yaml).
"""

from __future__ import annotations

import importlib
import importlib.util
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from stnlab.config import CONF_DIR, checks
from stnlab.errors import ConfigError
from stnlab.sweeps.fidelity import Fidelity, TimeLimit, parse_fidelity, parse_time_limit
from stnlab.sweeps.options import option_keys, split_args, sweep_defaults
from stnlab.sweeps.space import Param, parse_space

SWEEPS_DIR = CONF_DIR.parent / "sweeps"


@dataclass(frozen=True)
class SweepSpec:
    name: str
    study: str
    metric: str
    direction: str
    monitor: str
    n_trials: int | None
    timeout: float | None
    sampler: dict[str, Any]  # instantiable ({_target_: ...})
    pruner: dict[str, Any]
    overrides: list[str]
    params: dict[str, Param]
    enqueue: list[dict[str, Any]]
    group_ignore: list[str]
    storage: str
    out_dir: Path
    report_only: bool
    heartbeat: dict[str, int]
    fidelity: Fidelity | None = None
    time_limit: TimeLimit | None = None

    def fingerprint(self) -> dict[str, Any]:
        """What makes two workers run the same study (kept in the study's storage, checked on joining)."""
        return {
            "metric": self.metric,
            "direction": self.direction,
            "params": {name: f"{p.distribution!r} labels={p.labels} when={p.when}" for name, p in self.params.items()},
            "overrides": list(self.overrides),
            "fidelity": asdict(self.fidelity) if self.fidelity else None,
            "time_limit": asdict(self.time_limit) if self.time_limit else None,
        }

    @property
    def study_dir(self) -> Path:
        return self.out_dir / self.study

    @property
    def is_grid(self) -> bool:
        return issubclass(target_class(self.sampler["_target_"]), optuna.samplers.GridSampler)

    def grid_space(self) -> dict[str, list[Any]]:
        return {name: p.grid() for name, p in self.params.items()}

    def grid_size(self) -> int | None:
        return math.prod(len(values) for values in self.grid_space().values()) if self.is_grid else None

    def budget(self) -> int | None:
        """Total trials this study may hold: ``n_trials``, at most the grid's size for a grid."""
        sizes = [n for n in (self.n_trials, self.grid_size()) if n is not None]
        return min(sizes) if sizes else None


def default_storage(out_dir: Path | str | None = None) -> str:
    """``sqlite:///<out_dir>/optuna.db``, ``out_dir`` defaulting to conf/sweep.yaml's (``paths.sweeps_dir``, relative
    to the working dir)."""
    out_dir = Path(out_dir if out_dir is not None else sweep_defaults().out_dir)
    return f"sqlite:///{(out_dir / 'optuna.db').resolve()}"


def _known() -> str:
    return ", ".join(sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml")))


def spec_path(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"sweep spec {path} not found; give sweep=NAME of sweeps/NAME.yaml or a path")
        return path
    path = SWEEPS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"no sweep spec '{name}' (sweeps/{name}.yaml); known: {_known()}")
    return path


def _named(value: Any, presets: DictConfig, kind: str) -> dict[str, Any]:
    """``tpe`` / ``{name: tpe, seed: 0}`` / ``{_target_: ..., ...}`` -> an instantiable dict."""
    value = OmegaConf.to_container(value) if isinstance(value, DictConfig) else value
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        raise ConfigError(f"{kind}: expected a name ({', '.join(presets)}) or a mapping, got {value!r}")
    value = dict(value)
    name = value.pop("name", None)
    if name is not None:
        if name not in presets:
            raise ConfigError(f"unknown {kind} '{name}'; use one of {', '.join(presets)} or give _target_")
        value = {**OmegaConf.to_container(presets[name]), **value}
    if "_target_" not in value:
        raise ConfigError(f"{kind} needs a name ({', '.join(presets)}) or a _target_")
    target_class(value["_target_"], kind)
    return value


def target_class(target: str, kind: str = "_target_") -> type:
    module, _, name = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as e:
        raise ConfigError(f"{kind} _target_={target} cannot be imported ({e}); check its spelling") from None


def _apply_options(cfg: DictConfig, options: list[str]) -> None:
    for o, arg in zip(OverridesParser.create().parse_overrides(options), options):
        value = o.value()
        try:
            OmegaConf.update(cfg, o.key_or_group, value, merge=False)
        except OmegaConfBaseException as e:
            raise ConfigError(f"cannot apply sweep option {arg}: {e}") from None


def load(argv: list[str]) -> tuple[SweepSpec, list[str]]:
    """The spec named by ``sweep=`` on the command line, and the training overrides there."""
    defaults = sweep_defaults()
    keys = option_keys()
    options, overrides = split_args(argv, keys)
    given = OmegaConf.create({})
    _apply_options(given, options)
    name = given.get("sweep")
    if not name:
        raise ConfigError(f"no sweep given: python src/sweep.py sweep=NAME [overrides] (NAME one of {_known()})")
    path = spec_path(str(name))
    try:
        spec = OmegaConf.load(path)
    except (OmegaConfBaseException, OSError, ValueError) as e:
        raise ConfigError(f"cannot read sweep spec {path}: {e}") from None
    unknown = sorted(set(map(str, spec)) - keys)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(keys))}")
    cfg = OmegaConf.merge(defaults, spec)
    _apply_options(cfg, options)
    cfg.study = cfg.study or path.stem
    return build(cfg, path.stem), overrides


def _heartbeat(node: Any) -> dict[str, int]:
    """``heartbeat.interval/grace_period/max_retry``: whole seconds (counts) > 0 (max_retry >= 0)."""
    out = {}
    for key, value in (node or {}).items():
        least = 0 if key == "max_retry" else 1
        if isinstance(value, bool) or not str(value).removeprefix("-").isdecimal() or int(str(value)) < least:
            raise ConfigError(f"heartbeat.{key}={value} must be an integer >= {least}")
        out[str(key)] = int(str(value))
    if "interval" in out and "grace_period" in out and out["grace_period"] < out["interval"]:
        raise ConfigError(
            f"heartbeat.grace_period={out['grace_period']} must be >= heartbeat.interval="
            f"{out['interval']} (a live worker would be taken for dead)"
        )
    return out


def build(cfg: DictConfig, name: str) -> SweepSpec:
    """Validate a merged sweep config into a ``SweepSpec``."""
    checks.one_of("direction", cfg.direction, ("maximize", "minimize"))
    for key in ("n_trials", "timeout"):
        if cfg[key] is not None:
            checks.positive_number(key, cfg[key], "a positive number or null")
    sampler = _named(cfg.sampler, cfg.samplers, "sampler")
    requires = sampler.pop("_requires_", None)
    if requires and importlib.util.find_spec(requires) is None:
        raise ConfigError(f"sampler {sampler['_target_']} needs the '{requires}' package: pip install {requires}")
    params = parse_space(OmegaConf.to_container(cfg.params, resolve=True))
    out_dir = Path(cfg.out_dir)
    spec = SweepSpec(
        name=name,
        study=str(cfg.study),
        metric=str(cfg.metric),
        direction=str(cfg.direction),
        monitor=str(cfg.monitor),
        n_trials=None if cfg.n_trials is None else int(cfg.n_trials),
        timeout=cfg.timeout,
        sampler=sampler,
        pruner=_named(cfg.pruner, cfg.pruners, "pruner"),
        overrides=[str(o) for o in cfg.overrides],
        params=params,
        enqueue=[dict(e) for e in OmegaConf.to_container(cfg.enqueue, resolve=True)],
        group_ignore=[str(g) for g in cfg.group_ignore],
        storage=str(cfg.storage) if cfg.storage else default_storage(out_dir),
        out_dir=out_dir,
        report_only=bool(cfg.report_only),
        heartbeat=_heartbeat(cfg.heartbeat),
        fidelity=parse_fidelity(OmegaConf.to_container(cfg.fidelity, resolve=True) if cfg.fidelity else None),
        time_limit=parse_time_limit(OmegaConf.to_container(cfg.time_limit, resolve=True) if cfg.time_limit else None),
    )
    if spec.is_grid:
        if spec.enqueue:
            raise ConfigError("a grid sampler runs every grid point itself; remove `enqueue`")
        spec.grid_space()  # raises when a parameter has no finite grid
    elif spec.budget() is None and spec.timeout is None:
        raise ConfigError(f"sweep {name} has neither n_trials nor timeout; set n_trials=N or timeout=SECONDS")
    if spec.fidelity is not None and spec.is_grid:
        raise ConfigError("fidelity (successive halving) draws configurations from a sampler; it cannot run a grid")
    if spec.budget() is not None and len(spec.enqueue) > spec.budget():
        raise ConfigError(f"{len(spec.enqueue)} enqueued trials exceed n_trials={spec.budget()}; raise n_trials")
    for entry in spec.enqueue:
        missing = set(entry) - set(params)
        if missing:
            raise ConfigError(f"enqueue entry {entry} names unknown params {sorted(missing)}; params: {sorted(params)}")
    return spec
