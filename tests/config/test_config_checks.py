"""stnlab.config.schema is the one place that checks a run config's values: a data module built from Python and a
run config composed from conf/ get the same line for the same bad value, before any work starts."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from stnlab.config import compose_train
from stnlab.config.schema import validate
from stnlab.data.datamodule import GTSRBDataModule
from stnlab.data.synth import SynthDataModule
from stnlab.errors import ConfigError


def _error(make) -> str:
    with pytest.raises(ConfigError) as e:
        make()
    return str(e.value)


def _validated(overrides: list[str]):
    return lambda: validate(OmegaConf.to_container(compose_train(overrides), resolve=True))


@pytest.mark.parametrize(
    "overrides, kwargs, message",
    [
        (["data.image_size=4"], dict(image_size=4), "data.image_size=4 is too small; use at least 8 (the reference"),
        (["data=synth", "data.clutter=2.0"], dict(clutter=2.0), "data.clutter=2.0 must lie in [0, 1]"),
        (["data=synth", "data.num_val=0"], dict(num_val=0), "data.num_train=4000, num_val=0 must be >= 1"),
        (["data.balance=1.5"], dict(balance=1.5), "data.balance=1.5 must be between 0"),
    ],
)
def test_a_data_module_and_a_run_config_get_the_same_line(overrides, kwargs, message, tmp_path):
    module = SynthDataModule if "data=synth" in overrides else GTSRBDataModule
    root = {"root": str(tmp_path)} if module is GTSRBDataModule else {}
    from_python = _error(lambda: module(**root, **kwargs))
    from_config = _error(_validated(overrides))
    assert from_python == from_config and from_python.startswith(message), (from_python, from_config)


def test_the_speed_section_is_checked_with_the_run_config():
    assert _error(_validated(["+speed.fast=true"])).startswith("speed.fast is not a speed switch")
