"""Benchmark every model preset: ``python src/bench.py [device=cuda] ['image_size=[32,48]'] [quick=true]``.

The app is ``stnlab.apps.bench``, imported when the job runs; ``--help`` lists its keys (``conf/bench.yaml``).
"""

from stnlab.cli import command

if __name__ == "__main__":
    command("stnlab.apps.bench:run")
