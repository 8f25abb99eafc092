"""Compare runs: ``python src/compare.py ['runs=[RUN_DIR | FOLDER | SWEEP_NAME, ...]'] [sort=KEY] [order=asc|desc]``.

The app is ``stnlab.apps.compare``; ``--help`` lists its keys (``conf/compare.yaml``).
"""

from stnlab.apps.compare import main

if __name__ == "__main__":
    main()
