"""Run an Optuna sweep of training runs: ``python src/sweep.py sweep=NAME [options] [overrides]``.

NAME is a spec in sweeps/ (or a path to one); options are keys of conf/sweep.yaml
(n_trials=, timeout=, storage=, sampler=, pruner=, study=, report_only=true, ...); every
other argument is a training override applied to each trial. Many workers (on one or many
machines) run the same command against one storage to share the study. ``--help`` lists the keys.
"""

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import hydra
import optuna
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from stnlab.cli import hydra_entry, run_cli
from stnlab.config import CONF_DIR
from stnlab.errors import StnlabError
from stnlab.sweeps import spec as spec_mod
from stnlab.sweeps.runner import run
from stnlab.sweeps.spec import split_command_line

# The command line's training overrides, kept from Hydra, which composes conf/sweep.yaml alone: each trial
# composes the training config with them (and with its params).
TRAINING_OVERRIDES: list[str] = []


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


@hydra.main(config_path=str(CONF_DIR), config_name="sweep", version_base="1.3")
def _app(cfg: DictConfig) -> None:
    # The spec file goes between conf/sweep.yaml and the command line: the runner reads the options as given.
    run_cli(sweep, [*HydraConfig.get().overrides.task, *TRAINING_OVERRIDES])


def main() -> None:
    """``python src/sweep.py``: the command line (``conf/sweep.yaml``), its errors as one line."""
    sys.argv[1:], TRAINING_OVERRIDES[:] = run_cli(split_command_line, sys.argv[1:])
    hydra_entry(_app)
