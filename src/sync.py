"""Upload the offline W&B runs: ``python src/sync.py [dry_run=true] ['kinds=[train,eval]'] [include_failed=true]``.

The app is ``stnlab.apps.sync``, imported when the job runs; ``--help`` lists its keys (``conf/sync.yaml``).
"""

from stnlab.cli import command

if __name__ == "__main__":
    command("stnlab.apps.sync:sync_all")
