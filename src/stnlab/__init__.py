"""stnlab: Spatial Transformer Network experiments on traffic-sign recognition."""

from stnlab.errors import StnlabError
from stnlab.run_dirs import register_resolvers

register_resolvers()  # ${stnlab.run_dir:...} in conf/train.yaml (hydra.run.dir of resumed runs)

IDSIA_COMMITTEE_ACC = 99.46
"""Top-1 test accuracy (%) of the IDSIA 25-network committee on GTSRB: the baseline every run is set against."""

__all__ = ["StnlabError", "IDSIA_COMMITTEE_ACC"]
