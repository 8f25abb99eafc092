"""Optuna sweeps of training runs: spec (spec.py, space.py), storage, one trial (objective.py),
study callbacks, report, the command (runner.py) and the dashboard (dashboard.py)."""
