"""The experiment group (conf/experiment/): each one composes into a run config that passes the checks."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from stnlab.config import compose_train, group_options
from stnlab.config.schema import validate


@pytest.mark.parametrize("name", group_options("experiment"))
def test_every_experiment_composes_into_a_valid_run(name):
    cfg = compose_train([f"experiment={name}"])
    validate(OmegaConf.to_container(cfg, resolve=True))
    assert cfg.identity.experiment and cfg.identity.modified == ""


def composed_as_spelled(name: str, spelled: list[str], identity: str) -> dict:
    """Asserts that experiment=``name`` composes the run that the ``spelled`` command line does, apart from its
    identity (``identity.experiment`` = ``identity``, nothing modified); returns that run config, unresolved."""
    named = OmegaConf.to_container(compose_train([f"experiment={name}"]), resolve=False)
    long = OmegaConf.to_container(compose_train(spelled), resolve=False)
    assert named.pop("identity") == {**long.pop("identity"), "experiment": identity, "modified": ""}
    assert named == long
    return named


def test_plain_ema_is_the_refit_command_it_names():
    """experiment=plain_ema is the command the refit seeds ran with: the same run, apart from its name."""
    spelled = ["experiment=plain", "trainer.max_epochs=12", "callbacks=[default,ema]"]
    named = composed_as_spelled("plain_ema", spelled, "plain_e12_ema")
    assert list(named["callbacks"])[-1] == "ema" and named["trainer"]["max_epochs"] == 12


def test_tuned_two_st_is_the_ablation_command_it_names():
    """experiment=tuned_two_st is the command the two-ST arm on plain_tuned ran with: the same run, apart from its
    name, with plain_tuned's backbone (FC 512) under the two STs."""
    spelled = ["experiment=plain_tuned", "model=compact_two_st", "module.locnet_lr_scale=0.1"]
    named = composed_as_spelled("tuned_two_st", spelled, "tuned_two_st")
    assert set(named["model"]["transformers"]) == {"input", "conv1"} and named["model"]["backbone"]["fc"] == 512


def test_plain_wide_is_plain_tuned_with_the_wider_backbone():
    """experiment=plain_wide is the command its validation and refit runs used: plain_tuned, widths 48-96-192."""
    spelled = ["experiment=plain_tuned", "model.backbone.widths=[48,96,192]"]
    named = composed_as_spelled("plain_wide", spelled, "plain_wide")
    assert named["model"]["backbone"]["widths"] == [48, 96, 192] and named["model"]["backbone"]["fc"] == 512


def test_wide_two_st_is_the_ablation_command_it_names():
    """experiment=wide_two_st is the command the two-ST arm on plain_wide ran with: the wider backbone stays
    under the two STs that the model preset brings."""
    spelled = [
        "experiment=plain_tuned",
        "model=compact_two_st",
        "module.locnet_lr_scale=0.1",
        "model.backbone.widths=[48,96,192]",
    ]
    named = composed_as_spelled("wide_two_st", spelled, "wide_two_st")
    assert set(named["model"]["transformers"]) == {"input", "conv1"}
    assert named["model"]["backbone"]["widths"] == [48, 96, 192] and named["model"]["backbone"]["fc"] == 512


# The searched experiments: sweeps/cpu30b.yaml's trial 16 (3 epochs) and trial 25 (12), rounded, on plain_ema.
SEARCHED = {
    "plain_fast": [
        "model.backbone.dropout=0.374",
        "augment.brightness=0.027",
        "augment.contrast=0.122",
        "augment.rotation=17.8",
        "augment.translation=0.080",
        "optim.lr=0.0347",
        "optim.weight_decay=0.00117",
        "module.label_smoothing=0.011",
        "trainer.max_epochs=3",
    ],
    "plain_tuned": [
        "model.backbone.dropout=0.277",
        "augment.brightness=0.00595",
        "augment.contrast=0.171",
        "augment.rotation=13.6",
        "augment.translation=0.0834",
        "optim.lr=0.0414",
        "optim.weight_decay=0.00108",
        "module.label_smoothing=0.0467",
    ],
}


@pytest.mark.parametrize("name, epochs", [("plain_fast", 3), ("plain_tuned", 12)])
def test_searched_experiments_are_plain_ema_with_the_searched_configuration(name, epochs):
    """Each searched experiment is plain_ema with ROI crops, FC 512, zoom of 20% and its trial's values."""
    common = ["experiment=plain_ema", "data.crop_roi=true", "model.backbone.fc=512", "augment.scale=[0.8,1.2]"]
    named = composed_as_spelled(name, common + SEARCHED[name], name)
    assert named["trainer"]["max_epochs"] == epochs
