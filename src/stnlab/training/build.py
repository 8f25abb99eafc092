"""Building a run's parts from its config nodes, with the user errors inside as one line."""

from __future__ import annotations

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException

from stnlab.errors import ConfigError, StnlabError, first_line


def build(node: dict | None, section: str, fix: str | None = None, **kwargs):
    """``instantiate(node)`` (None for an empty node), with a user error inside (a StnlabError, or a bad value or
    argument: bad shapes, positions, trainer flags) raised as one line naming ``section`` rather than Hydra's
    wrapped traceback; ``fix`` says what to change (default: the ``section.*`` override)."""
    if not node:
        return None
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, StnlabError):
            raise cause from None
        # RuntimeError: torch refusing a shape or an allocation; ImportError: a missing backend (accelerator=tpu).
        if cause is not None and isinstance(
            cause, (ValueError, TypeError, RuntimeError, ImportError, MisconfigurationException)
        ):
            first = first_line(cause, empty=type(cause).__name__)
            raise ConfigError(f"{section}: {first}; {fix or f'fix the {section}.* override'}") from None
        raise
