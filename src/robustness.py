"""Geometric robustness: ``python src/robustness.py 'ckpt=[PATH,PATH]' [split=val] [key=value ...]``.

The app is ``stnlab.apps.robustness``; ``--help`` lists its keys (``conf/robustness.yaml``).
"""

from stnlab.apps.robustness import main

if __name__ == "__main__":
    main()
