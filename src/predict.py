"""Classify new images, a video or a GTSRB track: ``python src/predict.py ckpt=PATH input=PATH [show_st=true]``.

The app is ``stnlab.apps.predict``; ``--help`` lists its keys (``conf/predict.yaml``).
"""

from stnlab.apps.predict import main

if __name__ == "__main__":
    main()
