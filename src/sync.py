"""Upload the offline W&B runs: ``python src/sync.py [dry_run=true] ['kinds=[train,eval]'] [include_failed=true]``.

The app is ``stnlab.apps.sync``; ``--help`` lists its keys (``conf/sync.yaml``).
"""

from stnlab.apps.sync import main

if __name__ == "__main__":
    main()
