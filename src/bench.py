"""Benchmark every model preset: ``python src/bench.py [device=cuda] ['image_size=[32,48]'] [quick=true]``.

The app is ``stnlab.apps.bench``; ``--help`` lists its keys (``conf/bench.yaml``).
"""

from stnlab.apps.bench import main

if __name__ == "__main__":
    main()
