"""Every model preset: shapes, identity at initialisation, gradients into the localisation nets."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import CONF, compose
from stnlab.contrast_norm import SpatialContrastiveNorm, gaussian_kernel1d
from stnlab.training.module import build_network

PRESETS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))


def net_for(preset: str, size: int = 32):
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(compose([f"model={preset}", f"data.image_size={size}"]), resolve=True)
    return build_network(cfg)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("size", [32, 48])
def test_output_shape(preset, size):
    net = net_for(preset, size)
    assert net(torch.randn(2, 3, size, size)).shape == (2, 43)


@pytest.mark.parametrize("preset", PRESETS)
def test_st_is_identity_at_init(preset):
    torch.manual_seed(0)
    net = net_for(preset)
    x = torch.randn(2, 3, 32, 32)
    for name, st in net.transformers.items():
        c, s = net.backbone.shape_at(net.positions[name])
        inp = torch.randn(2, c, s, s)
        assert torch.allclose(st(inp), inp, atol=1e-5), name
    assert torch.allclose(net(x), _without_sts(net)(x), atol=1e-5)


def _without_sts(net):
    import copy

    bare = copy.deepcopy(net)
    bare.transformers.clear()
    bare.positions.clear()
    return bare


@pytest.mark.parametrize("preset", [p for p in PRESETS if not p.endswith("no_st")])
def test_gradients_reach_localisation_nets(preset):
    torch.manual_seed(0)
    net = net_for(preset)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 43, (8,))
    for _ in range(2):  # step 1 moves the zero-initialised regressor, step 2 reaches the locnet
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    for name, st in net.transformers.items():
        assert st.regressor.weight.grad.abs().sum() > 0, name
        first = next(p for p in st.locnet.parameters() if p.dim() > 1)
        assert first.grad is not None and first.grad.abs().sum() > 0, name


def test_presets_place_sts_as_the_paper():
    assert net_for("two_st").positions == {"input": 0, "conv2": 2}
    assert net_for("conv_st").positions == {"input": 0}
    assert net_for("no_st").positions == {}


def test_compact_presets_put_small_sts_before_the_compact_backbone():
    from stnlab.models import CompactBackbone

    nets = {p: net_for(p) for p in ("compact_no_st", "compact_conv_st", "compact_fc_st", "compact_two_st")}
    assert all(isinstance(n.backbone, CompactBackbone) for n in nets.values())
    assert nets["compact_two_st"].positions == {"input": 0, "conv1": 1}
    assert nets["compact_no_st"].positions == {}
    bare = sum(p.numel() for p in nets["compact_no_st"].parameters())
    assert bare < 1_000_000  # small enough for a CPU
    for name, net in nets.items():  # each ST costs a fraction of the backbone
        assert sum(p.numel() for p in net.parameters()) < 1.3 * bare, name
    # The IDSIA presets keep their backbone; a backbone= choice still wins over a compact preset's.
    assert not isinstance(net_for("two_st").backbone, CompactBackbone)
    assert compose(["model=compact_two_st", "backbone=idsia"]).model.backbone._target_.endswith("ConvBackbone")


@pytest.mark.parametrize("size", [32, 48])
def test_compact_backbone_halves_the_size_per_block(size):
    from stnlab.models import CompactBackbone

    bb = CompactBackbone(3, size, 43, widths=(8, 16, 24), depth=2, fc=32)
    assert [bb.shape_at(k) for k in range(4)] == [(3, size), (8, size // 2), (16, size // 4), (24, size // 8)]
    x = torch.randn(4, 3, size, size)
    feats = []
    for block in bb.blocks:
        x = block(x)
        feats.append(x)
    assert [f.shape[1:] for f in feats] == [torch.Size([c, s, s]) for c, s in bb.shapes[1:]]
    assert bb.head(feats).shape == (4, 43)


def test_compact_backbone_takes_one_depth_per_block():
    from stnlab.models.backbone import CompactBackbone

    net = CompactBackbone(3, 32, 43, widths=(8, 16, 32), depth=[1, 2, 3])
    convs = [sum(isinstance(m, torch.nn.Conv2d) for m in block) for block in net.blocks]
    assert convs == [1, 2, 3]
    with pytest.raises(ValueError, match="one entry per block"):
        CompactBackbone(3, 32, 43, widths=(8, 16, 32), depth=[1, 2])


def test_compact_backbone_rejects_too_many_blocks_for_the_image():
    from stnlab.models import CompactBackbone

    with pytest.raises(ValueError, match="too small"):
        CompactBackbone(3, 8, 43, widths=(8, 8, 8, 8, 8))


def test_st_position_beyond_backbone_is_rejected():
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(compose(["model=conv_st", "model.transformers.input.position=7"]), resolve=True)
    with pytest.raises(ValueError, match="position 7 is beyond the backbone"):
        build_network(cfg)


def test_gaussian_kernel_matches_torch7():
    # Torch7 image.gaussian1D(7), normalised: exp(-((i - 4) / 1.75)^2 / 2), i = 1..7.
    k = gaussian_kernel1d(7)
    ref = torch.exp(-(((torch.arange(1, 8) - 4.0) / 1.75) ** 2) / 2)
    assert torch.allclose(k, ref / ref.sum())


def test_contrast_norm_removes_local_mean_and_scale():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 20, 20) * 5 + 3
    y = SpatialContrastiveNorm(3)(x)
    assert y.mean().abs() < 0.1
    assert torch.allclose(SpatialContrastiveNorm(3)(x * 10 + 4), y, atol=1e-4)  # invariant to affine intensity
