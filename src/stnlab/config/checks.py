"""Checks of single config values: the apps' command lines (Hydra has parsed them already: ``batch_size=0`` is
the int 0, ``rotation=[0,30]`` a list) and the numbers of the run config. Each returns the value in the form its
user takes, or raises a one-line ConfigError naming the key, the value and what was expected."""

from __future__ import annotations

import math
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from stnlab.errors import ConfigError

TRUE, FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def text(value: Any) -> str:
    """A value as it is written on the command line (``[0,30]``, ``{a:1}``, ``true``, ``null``)."""
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(map(text, value)) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, bool):
        return str(value).lower()
    return "null" if value is None else str(value)


def _fail(key: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"{key}={text(value)}: expected {expected}")


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    return int(value) if isinstance(value, str) and value.strip().lstrip("-").isdigit() else None


def number(key: str, value: Any, kind=float):
    """``kind(value)`` of a finite number, or a ConfigError naming the key (``data.batch_size=abc``)."""
    try:
        out = float(value)
        if isinstance(value, bool) or not math.isfinite(out) or (kind is int and out != int(out)):
            raise ValueError
        return kind(out)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{key}={value} is not {'an integer' if kind is int else 'a number'}; "
            f"set {key}=<{'integer' if kind is int else 'number'}>"
        ) from None


def switch(key: str, value: Any) -> bool | None:
    """``true``/``false``/``auto`` (or null) -> True/False/None (auto)."""
    if value is None or (isinstance(value, str) and value.lower() == "auto"):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "on", "off"):
        return value.lower() in ("true", "on")
    raise ConfigError(f"{key}={value} must be true, false or auto")


def required(cfg: DictConfig, key: str, hint: str) -> str:
    """``cfg[key]`` as a string; a one-line ConfigError with ``hint`` when it is ``???`` or empty."""
    if OmegaConf.is_missing(cfg, key) or cfg.get(key) in (None, ""):
        raise ConfigError(f"{key}= is required; pass {key}={hint}")
    return str(cfg[key])


def positive_key(cfg: DictConfig, key: str) -> int:
    return positive_int(key, cfg.get(key))


def positive_int(key: str, value: Any) -> int:
    """A count that must be at least 1 (a batch size, a number of images)."""
    number = _integer(value)
    if number is None or number < 1:
        raise _fail(key, value, "a positive integer")
    return number


def positive_number(key: str, value: Any, expected: str = "a positive number") -> float:
    """A number > 0 (a rate, a size, a time); ``expected`` says what it counts, for the error."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise _fail(key, value, expected)
    return value


def non_negative_int(key: str, value: Any) -> int:
    number = _integer(value)
    if number is None or number < 0:
        raise _fail(key, value, "an integer >= 0")
    return number


def optional(check, key: str, value: Any) -> Any:
    """``check(key, value)``, with null passing as None."""
    return None if value is None else check(key, value)


def boolean(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    low = str(value).lower()
    if low in TRUE | FALSE:
        return low in TRUE
    raise _fail(key, value, "true or false")


def listed(value: Any) -> list:
    """A list as given, a single value as a list of one; ``'a,b'`` (quoted on the command line) as ``[a, b]``."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        return [part.strip() for part in value.strip("[]").split(",") if part.strip()]
    return [value]


def words(key: str, value: Any) -> list[str]:
    return [str(v) for v in listed(value)]


def positive_ints(key: str, value: Any) -> list[int]:
    try:
        values = [positive_int(key, v) for v in listed(value)]
    except ConfigError:
        values = []
    if not values:
        raise _fail(key, value, "a list of positive integers, e.g. [32,48]")
    return values


def finite_floats(key: str, value: Any) -> list[float]:
    """Numbers without nan/inf: a level that is not a number would be written as NaN results."""
    try:
        values = [float(v) for v in listed(value) if not isinstance(v, bool)]
    except (TypeError, ValueError):
        raise _fail(key, value, "a list of numbers, e.g. [0,10,20]") from None
    if not values or len(values) != len(listed(value)) or not all(map(math.isfinite, values)):
        raise _fail(key, value, "a list of finite numbers, e.g. [0,10,20]")
    return values


def positive_floats(key: str, value: Any) -> list[float]:
    values = finite_floats(key, value)
    if any(v <= 0 for v in values):
        raise _fail(key, value, "numbers > 0 (zoom factors)")
    return values


def wandb_mode(key: str, value: Any) -> str | None:
    """``false``/``disabled`` -> 'disabled'; ``true`` -> None ($WANDB_MODE, else offline); offline/online as is."""
    low = text(value).lower()
    if low in FALSE or low == "disabled":
        return "disabled"
    if low in TRUE:
        return None
    if low in ("offline", "online"):
        return low
    raise _fail(key, value, "true, false, offline or online")


def one_of(key: str, value: Any, choices: Any) -> Any:
    if value not in choices:
        raise ConfigError(f"{key}={text(value)} must be one of {', '.join(map(str, choices))}")
    return value


def evaluation_keys(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with the keys that evaluate.py and robustness.py share checked: wandb, batch_size, verbose,
    and the ``data.*`` overrides of the checkpoint's data config (conf/cli/data.yaml; null ones dropped)."""
    return dict(
        values,
        wandb=wandb_mode("wandb", values["wandb"]),
        batch_size=positive_int("batch_size", values["batch_size"]),
        verbose=boolean("verbose", values["verbose"]),
        data={k: v for k, v in values["data"].items() if v is not None},
    )


def given_once(key: str) -> None:
    """Hydra keeps the last of ``ckpt=a ckpt=b`` (the spelling of the scripts before Hydra): refuse it."""
    if not HydraConfig.initialized():
        return
    given = [o for o in HydraConfig.get().overrides.task if o.split("=")[0].lstrip("+") == key]
    if len(given) > 1:
        raise ConfigError(
            f"{key}= is given {len(given)} times and only the last would count; give them as one list: '{key}=[a,b]'"
        )
