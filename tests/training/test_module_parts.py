"""The module is built from its parts: each config node instantiates as written, checkpoints rebuild it."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import compose
from stnlab.models import STNClassifier
from stnlab.training.checkpoints import load_module
from stnlab.training.module import STNModule, build_module

SCHEDULES = ["none", "cosine", "step", "plateau", "onecycle"]


@pytest.mark.parametrize("scheduler", SCHEDULES)
def test_every_part_instantiates_as_written(scheduler):
    cfg = compose(["model=two_st", "data.image_size=32", f"scheduler={scheduler}", "augment=jitter"])
    net = instantiate(cfg.model, _convert_="all")
    assert isinstance(net, STNClassifier) and net.num_classes == cfg.data.num_classes == 43
    assert isinstance(instantiate(cfg.optim), functools.partial)
    if scheduler == "none":
        assert cfg.scheduler is None
    else:
        assert isinstance(instantiate(cfg.scheduler), functools.partial)
        assert cfg.module.scheduler_interval == ("step" if scheduler == "onecycle" else "epoch")
    assert isinstance(instantiate(cfg.normalize), torch.nn.Module)
    assert isinstance(instantiate(cfg.augment), torch.nn.Module)
    module = instantiate(cfg.module, net=net, optimizer=instantiate(cfg.optim))
    assert isinstance(module, STNModule)


def test_num_classes_comes_from_the_data():
    cfg = OmegaConf.to_container(compose(["data=synth", "data.num_classes=10", "model=conv_st"]), resolve=True)
    module = build_module(cfg)
    assert module.num_classes == 10
    assert module(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).shape == (2, 10)


def test_parameter_groups_come_from_the_network():
    cfg = OmegaConf.to_container(
        compose(["model=two_st", "data.image_size=32", "optim.weight_decay=0.1", "module.locnet_lr_scale=0.5"]),
        resolve=True,
    )
    module = build_module(cfg)
    groups = {g["name"]: g for g in module.configure_optimizers().param_groups}
    assert set(groups) == {"backbone", "locnet", "regressor"}
    assert groups["locnet"]["lr"] == groups["regressor"]["lr"] == pytest.approx(0.005)
    assert groups["backbone"]["weight_decay"] == 0.1 and groups["regressor"]["weight_decay"] == 0.0
    no_st = build_module(OmegaConf.to_container(compose(["model=no_st", "data.image_size=32"]), resolve=True))
    assert [g["name"] for g in no_st.configure_optimizers().param_groups] == ["backbone"]


def _legacy(cfg: dict) -> dict:
    """The run config as checkpoints stored it before the module was built from its parts."""
    old = copy.deepcopy(cfg)
    module = old.pop("module")
    old["model"]["locnet_lr_scale"] = module["locnet_lr_scale"]
    old["model"].pop("default_transform")
    old["model"].pop("num_classes")
    old["data"].pop("num_classes")
    old["loss"] = {"label_smoothing": module["label_smoothing"]}
    old["normalize"] = {k: v for k, v in old["normalize"].items() if k in ("global_norm", "local_norm")}  # floored
    old["scheduler"] = {**old["scheduler"], "interval": module["scheduler_interval"]}
    return old


def test_a_checkpoint_rebuilds_its_module_also_from_the_older_config_layout(tmp_path):
    cfg = OmegaConf.to_container(
        compose(
            [
                "model=two_st",
                "data.image_size=32",
                "scheduler=cosine",
                "module.locnet_lr_scale=0.1",
                "module.label_smoothing=0.1",
                "normalize.variant=floored",  # what runs before the module node used
            ]
        ),
        resolve=True,
    )
    module = build_module(cfg).eval()
    with torch.no_grad():
        for st in module.net.transformers.values():
            st.regressor.weight.normal_(0, 0.01)
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    expected = module(images)
    for name, stored in (("new", cfg), ("old", _legacy(cfg))):
        path = tmp_path / f"{name}.ckpt"
        torch.save({"hyper_parameters": {"cfg": stored}, "state_dict": module.state_dict()}, path)
        loaded = load_module(path)
        assert torch.allclose(loaded(images), expected, atol=1e-6), name
        assert loaded.locnet_lr_scale == 0.1 and loaded.label_smoothing == 0.1
        assert loaded.scheduler_interval == "epoch"
