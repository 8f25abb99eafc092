"""Show what every ST of a trained network does: ``python src/visualize.py ckpt=PATH [n=16] [data=synth]``.

The app is ``stnlab.apps.visualize``, imported when the job runs; ``--help`` lists its keys (``conf/visualize.yaml``).
"""

from stnlab.cli import command

if __name__ == "__main__":
    command("stnlab.apps.visualize:visualize")
