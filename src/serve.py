"""Serve a checkpoint over HTTP: ``python src/serve.py ckpt=PATH [port=8000]``.

The app is ``stnlab.apps.serve``, imported when the job runs; ``--help`` lists its keys (``conf/serve.yaml``).
"""

from stnlab.cli import command

if __name__ == "__main__":
    command("stnlab.apps.serve:serve")
