from stnlab.tracking.wandb_logger import make_wandb_logger, run_name, run_tags

__all__ = ["make_wandb_logger", "run_name", "run_tags"]
