"""The search space of a sweep spec: readable entries -> Optuna distributions -> training overrides.

Entry forms (one key naming the kind, plus options)::

    optim.lr: {float: [1e-4, 1e-1], log: true}     # suggest_float (also step: 0.01)
    data.batch_size: {int: [16, 128], step: 16}     # suggest_int (also log: true)
    model: {choices: [no_st, conv_st]}              # suggest_categorical; value -> `model=conv_st`
    variant:                                        # labelled choices: label -> list of overrides
      choices: {conv_st-rot: [model=conv_st, transform=rotation], no_st: [model=no_st]}

The parameter name is the Hydra override key (``model``, ``optim.lr``, ``+key``), except for
labelled choices, whose name is free and whose label expands to its overrides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from stnlab.errors import ConfigError

KINDS = {"float": FloatDistribution, "int": IntDistribution}
OPTIONS = {"log", "step"}
_PLAIN = re.compile(r"^[\w./:@+-]+$")


@dataclass(frozen=True)
class Param:
    """One searched parameter: its Optuna distribution and how a value becomes Hydra overrides."""

    name: str
    distribution: BaseDistribution
    labels: dict[str, list[str]] = field(default_factory=dict)  # labelled choices only

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
    if kind == "choices":
        choices = entry["choices"]
        if set(entry) != {"choices"} or not choices:
            raise ConfigError(f"{where}: `choices` takes a non-empty list or label mapping and no other option")
        if isinstance(choices, dict):
            labels = {str(k): [str(o) for o in (v if isinstance(v, list) else [v])] for k, v in choices.items()}
            return Param(name, CategoricalDistribution(list(labels)), labels)
        return Param(name, CategoricalDistribution(list(choices)))
    bounds = entry[kind]
    if not (isinstance(bounds, list) and len(bounds) == 2):
        raise ConfigError(f"{where}: `{kind}` takes [low, high], got {bounds!r}")
    cast = float if kind == "float" else int
    try:
        low, high = cast(bounds[0]), cast(bounds[1])
        step = entry.get("step")
        step = cast(step) if step is not None else (None if kind == "float" else 1)
        return Param(name, KINDS[kind](low, high, log=bool(entry.get("log", False)), step=step))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def parse_space(params: dict[str, Any]) -> dict[str, Param]:
    return {str(name): parse_param(str(name), entry) for name, entry in (params or {}).items()}
