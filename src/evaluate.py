"""Evaluate a checkpoint: ``python src/evaluate.py ckpt=PATH [split=test|val] [data.KEY=VALUE ...]``.

The app is ``stnlab.apps.evaluate``; ``--help`` lists its keys (``conf/evaluate.yaml``).
"""

from stnlab.apps.evaluate import main

if __name__ == "__main__":
    main()
