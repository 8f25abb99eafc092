from stnlab.training.module import STNModule

__all__ = ["STNModule"]
