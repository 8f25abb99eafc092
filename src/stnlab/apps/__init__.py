"""The apps: one module per entry point in ``src/`` (``src/X.py`` runs ``stnlab.cli.command("stnlab.apps.X:fn")``,
which imports the module only when the job runs: ``--help`` needs no torch).

Each reads its ``conf/X.yaml`` through Hydra, checks the command line's values, calls the library
(data, models, training, evaluation, sweeps, ...) and prints what it did. Nothing in the library imports
an app.
"""
