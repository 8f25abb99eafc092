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


def test_plain_ema_is_the_refit_command_it_names():
    """experiment=plain_ema is the command the refit seeds ran with: the same run, apart from its name."""
    named = OmegaConf.to_container(compose_train(["experiment=plain_ema"]), resolve=False)
    spelled = ["experiment=plain", "trainer.max_epochs=12", "callbacks=[default,ema]"]
    long = OmegaConf.to_container(compose_train(spelled), resolve=False)
    assert named.pop("identity") == {**long.pop("identity"), "experiment": "plain_e12_ema", "modified": ""}
    assert named == long
    assert list(named["callbacks"])[-1] == "ema" and named["trainer"]["max_epochs"] == 12
