"""Class-balanced sampling (data.balance): how often each class is drawn, resumable order, bad values."""

from __future__ import annotations

import pytest
import torch

from stnlab.data.resumable import EpochShuffleSampler
from stnlab.data.tensors import class_balance_weights
from stnlab.errors import ConfigError

# 3 classes of 400, 100 and 20 samples: as skewed as GTSRB's most and least frequent classes.
LABELS = torch.cat([torch.full((400,), 0), torch.full((100,), 1), torch.full((20,), 2)])


def drawn_per_class(balance: float, epochs: int = 20) -> torch.Tensor:
    weights = class_balance_weights(LABELS, balance) if balance else None
    sampler = EpochShuffleSampler(len(LABELS), seed=3, weights=weights)
    counts = torch.zeros(3)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        counts += torch.bincount(LABELS[list(sampler)], minlength=3)
    return counts / counts.sum()


def test_balance_one_draws_every_class_equally_often():
    assert torch.allclose(drawn_per_class(1.0), torch.full((3,), 1 / 3), atol=0.02)


def test_balance_zero_keeps_the_data_frequencies_and_each_sample_once():
    sampler = EpochShuffleSampler(len(LABELS), seed=3)
    assert sorted(sampler) == list(range(len(LABELS)))
    assert torch.allclose(drawn_per_class(0.0), torch.tensor([400, 100, 20]) / 520.0)


def test_square_root_balance_lies_between():
    half = drawn_per_class(0.5)
    assert 20 / 520 < half[2] < 1 / 3 and 1 / 3 < half[0] < 400 / 520
    assert torch.allclose(half, torch.tensor([20.0, 10.0, 20**0.5]) / (30 + 20**0.5), atol=0.02)


def test_balanced_order_depends_on_seed_and_epoch_alone():
    w = class_balance_weights(LABELS, 1.0)
    a, b = EpochShuffleSampler(520, seed=5, weights=w), EpochShuffleSampler(520, seed=5, weights=w)
    a.set_epoch(2), b.set_epoch(2)
    assert list(a) == list(b)
    b.set_epoch(3)
    assert list(a) != list(b)


@pytest.mark.parametrize("balance", [-0.1, 1.5])
def test_balance_out_of_range_is_a_config_error(balance, tiny_overrides):
    from conftest import compose
    from stnlab.training.run import train

    with pytest.raises(ConfigError, match=f"data.balance={balance} must be between 0"):
        train(compose(tiny_overrides + [f"data.balance={balance}"]))


@pytest.mark.e2e
def test_a_balanced_run_trains(tiny_overrides, tmp_path):
    from conftest import compose
    from stnlab.training.run import train

    metrics = train(compose(tiny_overrides + ["model=compact_no_st", "data.balance=1.0", "trainer.max_epochs=1"]))
    assert 0.0 <= metrics["val/acc_best"] <= 1.0
