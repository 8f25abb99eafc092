from stnlab.training.module import STNModule, build_module

__all__ = ["STNModule", "build_module"]
