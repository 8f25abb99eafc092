"""Classify new images, a video or a GTSRB track: ``python src/predict.py ckpt=PATH input=PATH [show_st=true]``.

The app is ``stnlab.apps.predict``, imported when the job runs; ``--help`` lists its keys (``conf/predict.yaml``).
"""

from stnlab.cli import command

if __name__ == "__main__":
    command("stnlab.apps.predict:predict")
