"""Contrast normalisation against a literal NumPy transcription of Torch7's modules (nn/Spatial*Normalization.lua)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stnlab.contrast_norm import SpatialContrastiveNorm, gaussian_kernel1d
from stnlab.data.normalize import InputNormalizer


def torch7_contrastive(
    x: np.ndarray, kernel1d: np.ndarray, threshold: float = 1e-4, thresval: float = 1e-4
) -> np.ndarray:
    """One image (C, H, W), float64: SpatialSubtractiveNormalization then SpatialDivisiveNormalization."""
    c, h, w = x.shape
    kernel = np.outer(kernel1d, kernel1d)
    kernel = kernel / (kernel.sum() * c)  # kernel:div(kernel:sum() * nInputPlane)
    r = kernel.shape[0] // 2

    def estimator(planes: np.ndarray) -> np.ndarray:
        # SpatialZeroPadding(r, r, r, r) then SpatialConvolution(C, 1): every plane, every offset, summed.
        padded = np.pad(planes, ((0, 0), (r, r), (r, r)))
        out = np.zeros((h, w))
        for di in range(2 * r + 1):
            for dj in range(2 * r + 1):
                out += kernel[di, dj] * padded[:, di : di + h, dj : dj + w].sum(0)
        return out  # nn.Replicate copies it to every plane: broadcasting below

    coef = estimator(np.ones_like(x))
    centred = x - estimator(x) / coef  # subtractive: localsums / coef
    adjusted = np.sqrt(estimator(centred**2)) / coef  # divisive: stdestimator (square, conv, sqrt), then / coef
    thresholded = np.where(adjusted > threshold, adjusted, thresval)  # nn.Threshold(threshold, thresval)
    return centred / thresholded


def _reference(x: torch.Tensor, size: int = 7, **kw) -> torch.Tensor:
    k = gaussian_kernel1d(size).double().numpy()
    return torch.from_numpy(np.stack([torch7_contrastive(img, k, **kw) for img in x.double().numpy()]))


@pytest.mark.parametrize("channels", [1, 3])
def test_matches_torch7_on_random_images(channels):
    x = torch.rand(4, channels, 48, 48, generator=torch.Generator().manual_seed(channels)) * 2 - 1
    out = SpatialContrastiveNorm(channels)(x)
    assert (out.double() - _reference(x)).abs().max() < 1e-5


def test_matches_torch7_on_a_constant_image_and_a_flat_patch():
    # Flat regions fall under the threshold and are divided by thresval. In float32 the centred values of a
    # flat region are rounding noise of order 1e-7, which thresval = 1e-4 would enlarge: compare in float64.
    x = torch.full((2, 3, 48, 48), 0.7, dtype=torch.float64)
    x[1, :, :, 24:] = torch.rand(3, 48, 24, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = SpatialContrastiveNorm(3).double()(x)
    assert (out - _reference(x)).abs().max() < 1e-5
    assert out[0].abs().max() < 1e-5


def test_threshold_and_thresval_are_torch7s():
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 1e-3
    x[..., :8] *= 0.1  # local stds about 3e-5 on the left, 3e-4 on the right: both sides of the threshold
    norm = SpatialContrastiveNorm(3, size=5, threshold=1e-4, thresval=1.0)
    out = norm(x)
    ref = _reference(x, size=5, threshold=1e-4, thresval=1.0)
    assert (out.double() - ref).abs().max() < 1e-5
    assert out[..., :4].abs().max() < 1e-3 < out[..., 12:].abs().max()  # divided by thresval = 1 / by the std


def test_gradients_are_finite_on_flat_inputs():
    x = torch.zeros(1, 2, 9, 9, requires_grad=True)
    SpatialContrastiveNorm(2)(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_legacy_variant_divides_the_variance_and_floors_at_the_mean_std():
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(2))
    kernel = gaussian_kernel1d(7)
    k = torch.outer(kernel, kernel)[None, None].double()
    coef = F.conv2d(torch.ones(1, 1, 12, 12, dtype=torch.float64), k, padding=3)
    centred = x.double() - F.conv2d(x.double().mean(1, keepdim=True), k, padding=3) / coef
    std = (F.conv2d(centred.square().mean(1, keepdim=True), k, padding=3) / coef).sqrt()
    expected = centred / torch.maximum(std, std.mean((2, 3), keepdim=True)).clamp_min(1e-4)
    out = SpatialContrastiveNorm(3, legacy=True)(x)
    assert (out.double() - expected).abs().max() < 1e-5
    assert (SpatialContrastiveNorm(3)(x) - out).abs().max() > 0.05  # Torch7's differs


def test_the_variant_is_chosen_by_config_and_old_runs_keep_theirs():
    assert not InputNormalizer(3).local.legacy and InputNormalizer(3, variant="floored").local.legacy
    with pytest.raises(ValueError, match="normalize.variant=lcn is not one of torch7, floored"):
        InputNormalizer(3, variant="lcn")
    from stnlab.training.checkpoints import upgrade_config

    old = {"model": {"name": "no_st"}, "data": {"image_size": 32}, "normalize": {"global_norm": True}}
    assert upgrade_config(old)["normalize"]["variant"] == "floored"  # written before the module node
