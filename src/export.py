"""Export a checkpoint: ``python src/export.py ckpt=PATH format=onnx|torchscript|exported_program [wandb=true]``.

The app is ``stnlab.apps.export``, imported when the job runs; ``--help`` lists its keys (``conf/export.yaml``).
"""

from stnlab.cli import command

if __name__ == "__main__":
    command("stnlab.apps.export:export")
