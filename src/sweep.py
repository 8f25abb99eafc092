"""Run an Optuna sweep of training runs: ``python src/sweep.py sweep=NAME [options] [overrides]``.

NAME is a spec in sweeps/ (or a path to one); options are keys of conf/sweep.yaml
(n_trials=, timeout=, storage=, sampler=, pruner=, study=, report_only=true, ...); every
other argument is a training override applied to each trial. Many workers (on one or many
machines) run the same command against one storage to share the study. ``--help`` lists the keys.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # runs from a checkout without `pip install -e .`

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from stnlab.cli import hydra_entry, run_cli  # noqa: E402

# The command line's training overrides, kept from Hydra, which composes conf/sweep.yaml alone: each trial
# composes the training config with them (and with its params).
TRAINING_OVERRIDES: list[str] = []


@hydra.main(config_path="../conf", config_name="sweep", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from stnlab.sweeps.runner import main as run_sweep

    # The spec file goes between conf/sweep.yaml and the command line: the runner reads the options as given.
    run_cli(run_sweep, [*HydraConfig.get().overrides.task, *TRAINING_OVERRIDES])


if __name__ == "__main__":
    from stnlab.sweeps.spec import split_command_line

    sys.argv[1:], TRAINING_OVERRIDES[:] = run_cli(split_command_line, sys.argv[1:])
    hydra_entry(main)
