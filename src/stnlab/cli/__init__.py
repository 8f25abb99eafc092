"""Command-line glue: every entry point in ``src/`` is a Hydra app run by :func:`hydra_entry`; user errors
become one line on stderr and exit status 2."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn
from unittest import mock

from stnlab.errors import StnlabError


def run_cli(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except StnlabError as e:
        exit_with(e)


def exit_with(error: BaseException) -> NoReturn:
    logging.getLogger("stnlab").debug("user error", exc_info=error)
    print(f"stnlab: error: {error}", file=sys.stderr)
    sys.exit(2)


def hydra_entry(main: Callable[[], Any]) -> Any:
    """Run ``main``, a ``@hydra.main`` function, on the command line (``sys.argv``).

    ``--help`` shows ``conf/hydra/help/stnlab.yaml`` (the app's keys, described by the comments of its config
    file). A command line that does not compose (an unknown key, a value that does not parse, a missing group
    option) is one line and exit status 2, as the apps' own user errors, rather than Hydra's several lines.
    """
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from stnlab.cli.help import register_resolver

    register_resolver()
    argv = sys.argv[1:]
    if {"--help", "-h"} & set(argv) and not any(a.startswith("hydra/help=") for a in argv):
        # First, beside the other overrides: argparse takes one run of them (`x=1 --help y=2` is an error).
        sys.argv.insert(1, "hydra/help=stnlab")
    # Hydra then raises what it would print (and sys.exit(1)): the message is made one line here.
    with mock.patch.dict(os.environ, {"HYDRA_FULL_ERROR": "1"}):
        try:
            return main()
        except (HydraException, OmegaConfBaseException) as e:
            if _raised_by_the_app(e):
                raise
            exit_with(StnlabError(command_line_error(e)))


def _raised_by_the_app(error: BaseException) -> bool:
    """Whether ``error`` came from the app itself (through Hydra's ``run_job``) rather than its command line."""
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "run_job":
            return True
        tb = tb.tb_next
    return False


def command_line_error(error: BaseException) -> str:
    """One line for a command line that Hydra cannot compose."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    from stnlab.config import message_line

    cause = error.__cause__
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and "not in struct" in str(cause):
        return f"unknown key '{cause.full_key}'; --help lists the keys (+{cause.full_key}=VALUE adds a new one)"
    return message_line(error)
