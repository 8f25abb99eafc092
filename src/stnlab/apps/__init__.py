"""The apps: one module per entry point in ``src/`` (``src/X.py`` calls ``stnlab.apps.X.main()``).

Each reads its ``conf/X.yaml`` through Hydra, checks the command line's values, calls the library
(data, models, training, evaluation, sweeps, ...) and prints what it did. Nothing in the library imports
an app.
"""
