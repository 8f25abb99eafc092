"""Train one network: ``python src/train.py model=two_st [overrides]``.

The app is ``stnlab.apps.train``, imported when the job runs; ``--help`` lists its keys (``conf/train.yaml``).
"""

from stnlab.cli import command

if __name__ == "__main__":
    command("stnlab.apps.train:train")
