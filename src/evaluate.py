"""Evaluate a checkpoint: ``python src/evaluate.py ckpt=PATH [split=test|val] [data.KEY=VALUE ...]``.

The app is ``stnlab.apps.evaluate``, imported when the job runs; ``--help`` lists its keys (``conf/evaluate.yaml``).
"""

from stnlab.cli import command

if __name__ == "__main__":
    command("stnlab.apps.evaluate:evaluate")
