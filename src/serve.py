"""Serve a checkpoint over HTTP: ``python src/serve.py ckpt=PATH [port=8000]``.

The app is ``stnlab.apps.serve``; ``--help`` lists its keys (``conf/serve.yaml``).
"""

from stnlab.apps.serve import main

if __name__ == "__main__":
    main()
