"""The search space of a sweep spec: readable entries -> Optuna distributions -> training overrides.

Entry forms (one key naming the kind, plus options)::

    optim.lr: {float: [1e-4, 1e-1], log: true}     # suggest_float (also step: 0.01)
    data.batch_size: {int: [16, 128], step: 16}     # suggest_int (also log: true)
    model: {choices: [no_st, conv_st]}              # suggest_categorical; value -> `model=conv_st`
    variant:                                        # labelled choices: label -> list of overrides
      choices: {conv_st-rot: [model=conv_st, transform=rotation], no_st: [model=no_st]}
    module.locnet_lr_scale:                         # conditional: searched only when an earlier param
      {float: [0.03, 1.0], log: true, when: {variant: [conv_st-rot]}}   # takes one of these values

The parameter name is the Hydra override key (``model``, ``optim.lr``, ``+key``), except for
labelled choices, whose name is free and whose label expands to its overrides. Params are suggested
in the order written, so a ``when`` names params above it; an inactive param keeps the config's value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from stnlab.errors import ConfigError

KINDS = {"float": FloatDistribution, "int": IntDistribution}
OPTIONS = {"log", "step", "when"}
_PLAIN = re.compile(r"^[\w./:@+-]+$")


@dataclass(frozen=True)
class Param:
    """One searched parameter: its Optuna distribution and how a value becomes Hydra overrides."""

    name: str
    distribution: BaseDistribution
    labels: dict[str, list[str]] = field(default_factory=dict)  # labelled choices only
    when: dict[str, list[Any]] = field(default_factory=dict)  # active only where earlier params take these values

    def active(self, chosen: dict[str, Any]) -> bool:
        return all(chosen.get(name) in values for name, values in self.when.items())

    def suggest(self, trial) -> Any:
        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            return trial.suggest_categorical(self.name, list(d.choices))
        suggest = trial.suggest_float if isinstance(d, FloatDistribution) else trial.suggest_int
        return suggest(self.name, d.low, d.high, log=d.log, step=d.step)

    def overrides(self, value: Any) -> list[str]:
        if self.labels:
            return list(self.labels[value])
        return [f"{self.name}={override_value(value)}"]

    def grid(self) -> list[Any]:
        """Every value of this parameter, for a grid sampler."""
        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            return list(d.choices)
        if d.step is None:
            raise ConfigError(
                f"sweep param {self.name}: a grid needs a finite set; give it `choices: [...]` or a `step`"
            )
        n = int(round((d.high - d.low) / d.step)) + 1
        return [type(d.low)(d.low + i * d.step) for i in range(n)]


def override_value(value: Any) -> str:
    """A value as Hydra override syntax: ``true``, ``null``, ``0.001``, ``conv_st``, ``'a b'``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if _PLAIN.match(text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def parse_param(name: str, entry: Any) -> Param:
    """One search-space entry of a spec -> ``Param`` (``ConfigError`` naming the entry on any problem)."""
    where = f"sweep param {name}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping like {{float: [lo, hi]}} or {{choices: [...]}}, got {entry!r}")
    kinds = [k for k in entry if k in KINDS or k == "choices"]
    unknown = set(entry) - set(KINDS) - {"choices"} - OPTIONS
    if len(kinds) != 1 or unknown:
        raise ConfigError(f"{where}: use exactly one of float/int/choices (+ log, step), got keys {sorted(entry)}")
    kind = kinds[0]
    when = entry.get("when") or {}
    if not isinstance(when, dict) or not all(isinstance(v, list) and v for v in when.values()):
        raise ConfigError(f"{where}: `when` takes {{param: [values ...]}}, got {when!r}")
    when = {str(k): list(v) for k, v in when.items()}
    if kind == "choices":
        choices = entry["choices"]
        if set(entry) - {"when"} != {"choices"} or not choices:
            raise ConfigError(f"{where}: `choices` takes a non-empty list or label mapping and no other option")
        if isinstance(choices, dict):
            labels = {str(k): [str(o) for o in (v if isinstance(v, list) else [v])] for k, v in choices.items()}
            return Param(name, CategoricalDistribution(list(labels)), labels, when)
        return Param(name, CategoricalDistribution(list(choices)), when=when)
    bounds = entry[kind]
    if not (isinstance(bounds, list) and len(bounds) == 2):
        raise ConfigError(f"{where}: `{kind}` takes [low, high], got {bounds!r}")
    cast = float if kind == "float" else int
    try:
        low, high = cast(bounds[0]), cast(bounds[1])
        step = entry.get("step")
        step = cast(step) if step is not None else (None if kind == "float" else 1)
        return Param(name, KINDS[kind](low, high, log=bool(entry.get("log", False)), step=step), when=when)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def parse_space(params: dict[str, Any]) -> dict[str, Param]:
    space: dict[str, Param] = {}
    for name, entry in (params or {}).items():
        param = parse_param(str(name), entry)
        for other, values in param.when.items():
            if other not in space:
                raise ConfigError(f"sweep param {name}: `when` names {other}, which is not a param above it")
            d = space[other].distribution
            bad = [v for v in values if isinstance(d, CategoricalDistribution) and v not in d.choices]
            if bad:
                raise ConfigError(f"sweep param {name}: `when` gives {other} values {bad} that are not its choices")
        space[param.name] = param
    return space


def suggest_all(space: dict[str, Param], trial) -> dict[str, Any]:
    """The trial's values of the active params, suggested in the spec's order."""
    chosen: dict[str, Any] = {}
    for name, param in space.items():
        if param.active(chosen):
            chosen[name] = param.suggest(trial)
    return chosen


def overrides_of(space: dict[str, Param], params: dict[str, Any]) -> list[str]:
    """The training overrides of a trial's params (inactive params are absent and add none)."""
    return [o for name, p in space.items() if name in params for o in p.overrides(params[name])]
