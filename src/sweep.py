"""Run an Optuna sweep of training runs: ``python src/sweep.py sweep=NAME [options] [overrides]``.

NAME is a spec in sweeps/ (or a path to one); options are keys of conf/sweep.yaml
(n_trials=, timeout=, storage=, sampler=, pruner=, study=, report_only=true, ...); every
other argument is a training override applied to each trial. Many workers (on one or many
machines) run the same command against one storage to share the study.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # runs from a checkout without `pip install -e .`

from stnlab.cli import run_cli  # noqa: E402


def main() -> None:
    from stnlab.sweeps.runner import main as run_sweep

    run_cli(run_sweep)


if __name__ == "__main__":
    main()
