"""``key=value`` command lines (Hydra's style) for the evaluation scripts, with repeatable keys.

``parse(argv, options)`` returns ``(values, data_overrides, positional)``: ``values``
has every option (its default when absent; a list for ``repeat`` options), keys
starting with ``data.`` are collected as data overrides, and bare words (no ``=``)
are positional arguments where the script accepts them.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, Callable

from stnlab.errors import ConfigError

TRUE, FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def boolean(text: str) -> bool:
    low = text.lower()
    if low in TRUE | FALSE:
        return low in TRUE
    raise ValueError(f"expected true or false, got {text!r}")


def floats(text: str) -> list[float]:
    """``0,10,20`` or ``[0,10,20]`` -> [0.0, 10.0, 20.0]."""
    return [float(x) for x in text.strip("[]").split(",") if x.strip()]


def positive_int(text: str) -> int:
    """A count that must be at least 1 (a batch size, a number of images)."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise ValueError(f"expected a positive integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text) if text.strip().lstrip("-").isdigit() else None
    if value is None or value < 0:
        raise ValueError(f"expected an integer >= 0, got {text!r}")
    return value


def finite_floats(text: str) -> list[float]:
    """:func:`floats` without nan/inf: a level that is not a number would be written as NaN results."""
    try:
        values = floats(text)
    except ValueError:
        raise ValueError(f"expected comma-separated numbers, got {text!r}") from None
    bad = [v for v in values if not math.isfinite(v)]
    if bad or not values:
        raise ValueError(f"expected comma-separated finite numbers, got {text!r}")
    return values


def positive_floats(text: str) -> list[float]:
    values = finite_floats(text)
    if any(v <= 0 for v in values):
        raise ValueError(f"expected numbers > 0 (zoom factors), got {text!r}")
    return values


def words(text: str) -> list[str]:
    return [x.strip() for x in text.strip("[]").split(",") if x.strip()]


@dataclass(frozen=True)
class Option:
    default: Any
    help: str
    type: Callable[[str], Any] = str
    repeat: bool = False


def _default(opt: Option) -> Any:
    """A default written as text (``"false"``) goes through the option's type like a command-line value."""
    return opt.type(opt.default) if isinstance(opt.default, str) and opt.type is not str else opt.default


def usage(prog: str, summary: str, options: dict[str, Option], positional: str | None = None) -> str:
    lines = [f"usage: {prog} {positional + ' ' if positional else ''}[key=value ...]", "", summary, "", "keys:"]
    for key, opt in options.items():
        rep = " (repeatable)" if opt.repeat else ""
        lines.append(f"  {key}=...{rep}  {opt.help} [default: {opt.default}]")
    return "\n".join(lines)


def parse(argv: list[str], options: dict[str, Option], prog: str, summary: str, positional: str | None = None,
          data_overrides: bool = True) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    if any(a in ("-h", "--help", "help") for a in argv):
        print(usage(prog, summary, options, positional))
        sys.exit(0)
    values: dict[str, Any] = {k: ([] if o.repeat else _default(o)) for k, o in options.items()}
    data: dict[str, str] = {}
    rest: list[str] = []
    for arg in argv:
        key, eq, text = arg.partition("=")
        key = key.lstrip("+")
        if not eq:
            if positional is None:
                raise ConfigError(f"unexpected argument {arg!r}; use key=value ({', '.join(options)})")
            rest.append(arg)
            continue
        if data_overrides and key.startswith("data."):
            data[key] = text
            continue
        if key not in options:
            extra = ", data.<key>" if data_overrides else ""
            raise ConfigError(f"unknown key {key!r}; the keys are {', '.join(options)}{extra} (see --help)")
        opt = options[key]
        try:
            value = opt.type(text)
        except ValueError as e:
            raise ConfigError(f"{key}={text}: {e}") from None
        if opt.repeat:
            values[key].append(value)
        else:
            values[key] = value
    for key, opt in options.items():
        if opt.repeat and not values[key] and opt.default:
            values[key] = list(opt.default)
    return values, data, rest


def wandb_mode(text: str) -> str | None:
    """``false``/``disabled`` -> 'disabled'; ``true`` -> None ($WANDB_MODE, else offline); ``offline``/``online`` as is."""
    low = text.lower()
    if low in FALSE or low == "disabled":
        return "disabled"
    if low in TRUE:
        return None
    if low in ("offline", "online"):
        return low
    raise ValueError("expected true, false, offline or online")
