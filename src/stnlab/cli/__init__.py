"""Command-line glue: every entry point in ``src/`` is a Hydra app run by :func:`command`; user errors
become one line on stderr and exit status 2."""

from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn
from unittest import mock

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from stnlab.cli.help import register_resolver
from stnlab.config import CONF_DIR, message_line
from stnlab.errors import StnlabError, described
from stnlab.run_dirs import register_resolvers


def command(work: str, split: Callable[[list[str]], tuple[list[str], list[str]]] | None = None) -> Any:
    """``python src/<app>.py``: Hydra composes ``conf/<app>.yaml`` from the command line (:func:`hydra_entry`) and
    the job calls ``work``, ``"stnlab.apps.<app>:<function>"``, with the config (through :func:`run_cli`).

    ``work``'s module is imported only when the job runs: ``--help`` and a command line that does not compose
    answer without importing torch or Lightning (a second rather than several). ``split`` takes the arguments that
    Hydra must not see off the command line first (one line for a user error); they are the work's second argument.
    """
    module, _, name = work.partition(":")
    taken: list[list[str]] = []
    if split is not None:
        sys.argv[1:], rest = run_cli(split, sys.argv[1:])
        taken.append(rest)

    def job(cfg):
        return run_cli(getattr(importlib.import_module(module), name), cfg, *taken)

    job.__module__ = module  # Hydra names the job after its function's module: hydra.job.name, <app>.log, --help
    app = hydra.main(config_path=str(CONF_DIR), config_name=module.rpartition(".")[2], version_base="1.3")(job)
    return hydra_entry(app)


def run_cli(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, a user error ending the command with one line; in a ``-m`` multirun, a failed job
    is reported and recorded instead, and the next job runs (an interrupted one stops them all)."""
    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    job = None
    if hydra is not None and hydra.mode == RunMode.MULTIRUN:
        job = _Job(int(hydra.job.num), list(hydra.overrides.task))
        _JOBS.append(job)
    try:
        return fn(*args, **kwargs)
    except StnlabError as e:
        if job is None or hasattr(e, "exit_code"):  # SIGTERM or Ctrl-C stops a multirun too
            exit_with(e)
        print(f"stnlab: error: multirun job #{job.num}: {e}", file=sys.stderr, flush=True)
        job.error = str(e)
    except Exception as e:
        if job is None:
            raise
        traceback.print_exc()  # a bug in one job: its traceback, then the next job
        job.error = described(e, 300)
        job.user_error = False
    return None


def log_progress(verbose: bool) -> None:
    """The log of evaluate.py and robustness.py: their progress lines with ``verbose=true``, else warnings only."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")


def exit_with(error: BaseException) -> NoReturn:
    """One line on stderr; exit status 2, or the error's own ``exit_code`` (128 + signal for an interrupted run)."""
    logging.getLogger("stnlab").debug("user error", exc_info=error)
    print(f"stnlab: error: {error}", file=sys.stderr)
    sys.exit(getattr(error, "exit_code", 2))


@dataclass
class _Job:
    num: int
    overrides: list[str]
    error: str | None = None  # its one line, when it failed
    user_error: bool = True  # a StnlabError (exit status 2), not a bug's traceback


_JOBS: list[_Job] = []  # this process's multirun jobs so far


def _exit_if_jobs_failed() -> None:
    """After a multirun: each failed job on a line (with the overrides that set it apart), then exit non-zero
    (2 when every failure was a user error, 1 when one was a bug)."""
    failed = [job for job in _JOBS if job.error is not None]
    if not failed:
        return
    shared = set.intersection(*(set(job.overrides) for job in _JOBS))
    for job in failed:
        own = " ".join(o for o in job.overrides if o not in shared)
        print(f"stnlab: failed: multirun job #{job.num}{f' ({own})' if own else ''}: {job.error}", file=sys.stderr)
    print(f"stnlab: error: {len(failed)} of {len(_JOBS)} multirun jobs failed (listed above)", file=sys.stderr)
    sys.exit(2 if all(job.user_error for job in failed) else 1)


def hydra_entry(main: Callable[[], Any]) -> Any:
    """Run ``main``, a ``@hydra.main`` function, on the command line (``sys.argv``).

    ``--help`` shows ``conf/hydra/help/stnlab.yaml`` (the app's keys, described by the comments of its config
    file). A command line that does not compose (an unknown key, a value that does not parse, a missing group
    option) is one line and exit status 2, as the apps' own user errors, rather than Hydra's several lines.
    """
    register_resolver()  # ${stnlab.help:...} of conf/hydra/help/stnlab.yaml
    register_resolvers()  # ${stnlab.run_dir:...} and the others of conf/train.yaml's hydra node
    _JOBS.clear()
    argv = sys.argv[1:]
    if {"--help", "-h"} & set(argv) and not any(a.startswith("hydra/help=") for a in argv):
        # First, beside the other overrides: argparse takes one run of them (`x=1 --help y=2` is an error).
        sys.argv.insert(1, "hydra/help=stnlab")
    # Hydra then raises what it would print (and sys.exit(1)): the message is made one line here.
    with mock.patch.dict(os.environ, {"HYDRA_FULL_ERROR": "1"}):
        try:
            result = main()
        except (HydraException, OmegaConfBaseException) as e:
            if _raised_by_the_app(e):
                raise
            exit_with(StnlabError(command_line_error(e)))
        except KeyboardInterrupt:  # Ctrl-C outside a run's fit (which stops with its checkpoint written)
            print("stnlab: error: interrupted (Ctrl-C)", file=sys.stderr)
            sys.exit(130)
    _exit_if_jobs_failed()
    return result


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
    cause = error.__cause__
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and "not in struct" in str(cause):
        return f"unknown key '{cause.full_key}'; --help lists the keys (+{cause.full_key}=VALUE adds a new one)"
    return message_line(error)
