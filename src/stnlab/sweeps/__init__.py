"""Optuna sweeps of training runs: spec (spec.py, space.py), storage, one trial (objective.py),
study callbacks, report, the study loop (runner.py; the app is stnlab.apps.sweep) and the dashboard (dashboard.py)."""
