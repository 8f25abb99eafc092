from stnlab.models.backbone import CompactBackbone, ConvBackbone
from stnlab.models.localization import ConvLocNet, FCLocNet
from stnlab.models.network import STNClassifier
from stnlab.models.spatial_transformer import SpatialTransformer
from stnlab.models.transforms import Affine, Projective, RotationScaleTranslation, ThinPlateSpline, Transform

__all__ = [
    "CompactBackbone",
    "ConvBackbone",
    "ConvLocNet",
    "FCLocNet",
    "STNClassifier",
    "SpatialTransformer",
    "Affine",
    "RotationScaleTranslation",
    "Projective",
    "ThinPlateSpline",
    "Transform",
]
