"""Export a checkpoint: ``python src/export.py ckpt=PATH format=onnx|torchscript|exported_program [wandb=true]``.

The app is ``stnlab.apps.export``; ``--help`` lists its keys (``conf/export.yaml``).
"""

from stnlab.apps.export import main

if __name__ == "__main__":
    main()
