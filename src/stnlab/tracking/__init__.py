from stnlab.tracking.run_identity import run_name, run_tags
from stnlab.tracking.wandb_logger import make_wandb_logger

__all__ = ["make_wandb_logger", "run_name", "run_tags"]
