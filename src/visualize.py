"""Show what every ST of a trained network does: ``python src/visualize.py ckpt=PATH [n=16] [data=synth]``.

The app is ``stnlab.apps.visualize``; ``--help`` lists its keys (``conf/visualize.yaml``).
"""

from stnlab.apps.visualize import main

if __name__ == "__main__":
    main()
