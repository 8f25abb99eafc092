"""Run an Optuna sweep of training runs: ``python src/sweep.py sweep=NAME [options] [overrides]``.

The app is ``stnlab.apps.sweep``; ``--help`` lists its keys (``conf/sweep.yaml``).
"""

from stnlab.apps.sweep import main

if __name__ == "__main__":
    main()
