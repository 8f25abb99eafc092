"""Train one network: ``python src/train.py model=two_st [overrides]``."""

from omegaconf import DictConfig

from stnlab.training.run import train as train_run


def train(cfg: DictConfig) -> float | None:
    """The run (``stnlab.training.run.train``); its best validation accuracy is the job's value for Hydra."""
    metrics = train_run(cfg)
    return metrics.get("val/acc_best") if metrics else None
