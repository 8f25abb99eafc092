"""optuna-dashboard on the sweeps' storage: ``python src/dashboard.py [study=NAME] [storage=URL] [port=8080]``.

The app is ``stnlab.apps.dashboard``, imported when the job runs; ``--help`` lists its keys (``conf/dashboard.yaml``).
"""

from stnlab.cli import command

if __name__ == "__main__":
    command("stnlab.apps.dashboard:dashboard")
