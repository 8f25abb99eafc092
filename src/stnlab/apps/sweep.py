"""Run an Optuna sweep of training runs: ``python src/sweep.py sweep=NAME [options] [overrides]``.

NAME is a spec in sweeps/ (or a path to one); options are keys of conf/sweep.yaml
(n_trials=, timeout=, storage=, sampler=, pruner=, study=, report_only=true, ...); every
other argument is a training override applied to each trial. Many workers (on one or many
machines) run the same command against one storage to share the study. ``--help`` lists the keys.
"""

import logging
from collections.abc import Sequence
from pathlib import Path

import optuna
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from stnlab.errors import StnlabError
from stnlab.sweeps import spec as spec_mod
from stnlab.sweeps.runner import run


class _UserErrorsInOneLine(logging.Filter):
    """Optuna logs a failed trial with its traceback: for a user error or an interrupt its message line is enough
    (the progress line names the cause); a bug keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, (StnlabError, KeyboardInterrupt, SystemExit)):
            record.exc_info, record.exc_text = None, None
        return True


def sweep(argv: Sequence[str]) -> Path:
    """``src/sweep.py``'s work, for its command-line overrides (``["sweep=smoke", "n_trials=5", "model=no_st"]``)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress line replaces Optuna's per-trial INFO
    for handler in logging.getLogger("optuna").handlers:
        if not any(isinstance(f, _UserErrorsInOneLine) for f in handler.filters):
            handler.addFilter(_UserErrorsInOneLine())
    spec, overrides = spec_mod.load(list(argv))
    return run(spec, overrides)


def from_command_line(cfg: DictConfig, training_overrides: list[str]) -> Path:
    """``src/sweep.py``'s job: Hydra composed conf/sweep.yaml alone, from the sweep options; each trial composes the
    training config with ``training_overrides`` (and its params). The spec file goes between conf/sweep.yaml and
    the command line: the runner reads the options as given."""
    return sweep([*HydraConfig.get().overrides.task, *training_overrides])
