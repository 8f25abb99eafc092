"""optuna-dashboard on the sweeps' storage: ``python src/dashboard.py [study=NAME] [storage=URL] [port=8080]``.

The app is ``stnlab.apps.dashboard``; ``--help`` lists its keys (``conf/dashboard.yaml``).
"""

from stnlab.apps.dashboard import main

if __name__ == "__main__":
    main()
