from stnlab.data.datamodule import GTSRBDataModule

__all__ = ["GTSRBDataModule"]
