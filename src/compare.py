"""Compare runs: ``python src/compare.py ['runs=[RUN_DIR | FOLDER | SWEEP_NAME, ...]'] [sort=KEY] [order=asc|desc]``.

The app is ``stnlab.apps.compare``, imported when the job runs; ``--help`` lists its keys (``conf/compare.yaml``).
"""

from stnlab.cli import command

if __name__ == "__main__":
    command("stnlab.apps.compare:compare")
