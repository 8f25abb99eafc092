"""Train one network: ``python src/train.py model=two_st [overrides]``.

The app is ``stnlab.apps.train``; ``--help`` lists its keys (``conf/train.yaml``).
"""

from stnlab.apps.train import main

if __name__ == "__main__":
    main()
