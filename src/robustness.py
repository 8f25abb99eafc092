"""Geometric robustness: ``python src/robustness.py 'ckpt=[PATH,PATH]' [split=val] [key=value ...]``.

The app is ``stnlab.apps.robustness``, imported when the job runs; ``--help`` lists its keys (``conf/robustness.yaml``).
"""

from stnlab.cli import command

if __name__ == "__main__":
    command("stnlab.apps.robustness:robustness")
