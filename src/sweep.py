"""Run an Optuna sweep of training runs: ``python src/sweep.py sweep=NAME [options] [overrides]``.

The app is ``stnlab.apps.sweep``, imported when the job runs; ``--help`` lists its keys (``conf/sweep.yaml``).
"""

from stnlab.cli import command
from stnlab.sweeps.options import split_command_line

if __name__ == "__main__":
    command("stnlab.apps.sweep:from_command_line", split=split_command_line)
