"""Successive halving over whole runs, the time limit, conditional params and the study's config snapshot."""

from __future__ import annotations

import os
import shutil

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from conftest import CONF, FAST, at_once, load_study, write_spec
from stnlab.apps.sweep import sweep
from stnlab.config import compose_train
from stnlab.errors import ConfigError
from stnlab.sweeps import snapshot
from stnlab.sweeps.fidelity import (
    OVER_LIMIT,
    OVERHEAD_MIN,
    Fidelity,
    Promote,
    TimeLimit,
    due_promotions,
    duplicate_of,
    parse_fidelity,
    parse_time_limit,
    sh_size,
)
from stnlab.sweeps.space import overrides_of, parse_space, suggest_all

# Tiny batches on a shared 2-core machine: one intra-op thread is ~10x faster than two contending.
pytestmark = pytest.mark.usefixtures("one_torch_thread")

LR = {"optim.lr": FloatDistribution(0.001, 1.0)}


def _finished(study, lr: float, value: float, rung: int = 0, constraints=None, **attrs):
    study.add_trial(
        create_trial(
            state=TrialState.COMPLETE,
            params={"optim.lr": lr},
            distributions=LR,
            value=value,
            user_attrs={"rung": rung, **attrs},
            constraints=constraints,
        )
    )


def test_fidelity_spec_and_budgets():
    f = parse_fidelity({"key": "trainer.max_epochs", "fractions": [0.0625, 0.25, 1.0], "eta": 4})
    assert [f.budget(16, r) for r in range(3)] == [1, 4, 16] and f.budget(6, 0) == 1  # at least one epoch
    assert sh_size(48, f) == (48 + 12 + 3, pytest.approx(48 / 16 + 12 / 4 + 3))
    for bad, problem in [
        ({"fractions": [0.5, 0.25, 1.0]}, "must rise strictly"),
        ({"fractions": [0.25, 0.5]}, "end at 1"),
        ({"fractions": [0.5, 1.0], "eta": 1}, "eta=1 must be an integer >= 2"),
        ({"fractions": [0.5, 1.0], "rungs": 3}, "fidelity takes"),
    ]:
        with pytest.raises(ConfigError, match=problem):
            parse_fidelity(bad)
    with pytest.raises(ConfigError, match="must be positive"):
        parse_time_limit({"minutes": 0})


def test_the_best_of_each_rung_are_promoted_once_and_infeasible_ones_never():
    f = Fidelity("trainer.max_epochs", (0.25, 0.5, 1.0), eta=2)
    study = optuna.create_study(direction="maximize")
    _finished(study, 0.1, 0.90)
    _finished(study, 0.2, 0.95, constraints={OVER_LIMIT: 3.0})  # over the time limit: never promoted
    _finished(study, 0.3, 0.80)
    _finished(study, 0.4, 0.85)
    assert [t.number for t in due_promotions(study, f)] == [0, 3]  # the best feasible half of 4 finished
    Promote(f)(study, None)
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert [(t.system_attrs["fixed_params"]["optim.lr"], t.user_attrs) for t in waiting] == [
        (0.1, {"rung": 1, "parent": 0}),
        (0.4, {"rung": 1, "parent": 3}),
    ]
    assert due_promotions(study, f) == []  # queued promotions are not due again
    _finished(study, 0.5, 0.99)  # a fifth finished rung-0 trial: still floor(5/2) = 2 promotions in all
    assert [t.number for t in due_promotions(study, f)] == [6]


def test_projected_minutes_scale_to_the_full_run_on_every_image():
    limit = TimeLimit(minutes=30, speedup=2.0)
    metrics = {"perf/train_img_per_s": 5.0, "data/train_images": 900, "data/val_images": 100}
    # 8 epochs of all 1000 images at twice the trial's 5 images/s, plus the fixed minute.
    assert limit.projected_minutes(metrics, 8) == pytest.approx(8 * 1000 / 10 / 60 + OVERHEAD_MIN)
    assert limit.projected_minutes({}, 8) is None


def test_conditional_params_are_suggested_only_where_they_apply():
    space = parse_space(
        {
            "st": {"choices": {"none": ["model=no_st"], "conv": ["model=conv_st"]}},
            "module.locnet_lr_scale": {"float": [0.1, 1.0], "when": {"st": ["conv"]}},
        }
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        chosen = suggest_all(space, trial)
        seen.add(tuple(sorted(chosen)))
        assert ("module.locnet_lr_scale" in chosen) == (chosen["st"] == "conv")
        assert overrides_of(space, chosen)[0] == f"model={'conv_st' if chosen['st'] == 'conv' else 'no_st'}"
        study.tell(trial, 0.5)
    assert len(seen) == 2
    with pytest.raises(ConfigError, match="`when` names st, which is not a param above it"):
        parse_space({"x": {"float": [0, 1], "when": {"st": ["conv"]}}, "st": {"choices": ["conv"]}})
    with pytest.raises(ConfigError, match=r"values \['fc'\] that are not its choices"):
        parse_space({"st": {"choices": ["conv"]}, "x": {"float": [0, 1], "when": {"st": ["fc"]}}})


@pytest.fixture
def fake_epochs_train(monkeypatch):
    """stnlab.training.run.train replaced: the value grows with the epochs and the lr, the fit takes 60 s per epoch
    (the study logic only; test_successive_halving_over_real_runs trains for real)."""
    calls = []

    def fake(cfg, extra_callbacks=None):
        epochs = cfg.trainer.max_epochs
        calls.append((cfg.sweep.trial, cfg.sweep.rung, epochs, cfg.optim.lr))
        value = cfg.optim.lr + epochs / 100
        return {
            "val/acc_weighted": value,
            "time/fit_s": 60.0 * epochs,
            "perf/train_img_per_s": 0.5,  # slowed by other work: the projection takes the CPU-time speed
            "perf/train_img_per_cpu_s": 1.5,
            "data/train_images": 90,
            "data/val_images": 10,
        }

    monkeypatch.setattr("stnlab.training.run.train", fake)
    return calls


def _sh_spec(tmp_path, name="sh", **fields):
    return write_spec(
        tmp_path,
        name,
        n_trials=4,
        metric="val/acc_weighted",
        monitor="val/acc_weighted",
        sampler={"name": "random", "seed": 1},
        pruner="none",
        fidelity={"key": "trainer.max_epochs", "fractions": [0.5, 1.0], "eta": 2},
        overrides=FAST + ["trainer.max_epochs=4"],
        params={"optim.lr": {"choices": [0.01, 0.02, 0.03, 0.04]}},
        **fields,
    )


@pytest.mark.e2e
def test_a_sweep_runs_rung_zero_at_a_fraction_then_the_best_half_in_full(tmp_path, sweep_args, fake_epochs_train):
    sweep([f"sweep={_sh_spec(tmp_path)}", *sweep_args])
    study = load_study(tmp_path, "sh")
    rung0 = [t for t in study.trials if t.user_attrs["rung"] == 0]
    rung1 = [t for t in study.trials if t.user_attrs["rung"] == 1]
    assert len(rung0) == 4 and len(rung1) == 2 and all(t.state == TrialState.COMPLETE for t in study.trials)
    assert {t.user_attrs["epochs"] for t in rung0} == {2} and {t.user_attrs["epochs"] for t in rung1} == {4}
    best_two = sorted(rung0, key=lambda t: t.value, reverse=True)[:2]
    assert sorted(t.user_attrs["parent"] for t in rung1) == sorted(t.number for t in best_two)
    assert {t.params["optim.lr"] for t in rung1} == {t.params["optim.lr"] for t in best_two}
    assert all(t.user_attrs["wall_minutes"] == t.user_attrs["epochs"] for t in study.trials)
    report = (tmp_path / "sweeps" / "sh" / "report.md").read_text()
    assert "| rung |" in report and "## Every trial" in report


@pytest.mark.e2e
def test_configurations_over_the_time_limit_are_violations_and_never_promoted(tmp_path, sweep_args, fake_epochs_train):
    # 1.5 images/s: the full 4-epoch run of 100 images is projected to 4 x 100 / 1.5 / 60 + 1 = 5.4 minutes.
    spec = _sh_spec(tmp_path, "limited", time_limit={"minutes": 4.0, "speedup": 1.0})
    sweep([f"sweep={spec}", *sweep_args])
    study = load_study(tmp_path, "limited")
    assert all(
        t.user_attrs["projected_minutes"] == pytest.approx(4 * 100 / 1.5 / 60 + 1, abs=0.01) for t in study.trials
    )
    assert all(t.constraints[OVER_LIMIT] > 0 for t in study.trials)
    assert len(study.trials) == 4  # nothing feasible, nothing promoted


@pytest.mark.e2e
def test_a_worker_bringing_another_metric_is_refused_in_one_line(tmp_path, sweep_args, fake_epochs_train):
    spec = _sh_spec(tmp_path, "same")
    sweep([f"sweep={spec}", *sweep_args])
    with pytest.raises(ConfigError) as e:
        sweep([f"sweep={spec}", "metric=val/acc_best", "monitor=val/acc", *sweep_args])
    assert str(e.value).startswith('study same was started with metric="val/acc_weighted", this worker brings ')
    assert "\n" not in str(e.value)


@pytest.mark.e2e
def test_trials_compose_from_the_study_snapshot_after_conf_changed(tmp_path, sweep_args, monkeypatch):
    """The snapshot is taken when the study starts; edits to conf/ (here a model preset deleted and the sgd step size
    changed) reach no trial of that study."""
    calls = []

    def record(cfg, extra_callbacks=None):
        calls.append((cfg.model.name, cfg.optim.lr))
        return {"val/acc_best": 0.5}

    monkeypatch.setattr("stnlab.training.run.train", record)
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    monkeypatch.setattr(snapshot, "CONF_DIR", conf)
    spec = write_spec(tmp_path, "snap", n_trials=2, sampler="random", pruner="none", overrides=FAST + ["optim=sgd"])
    sweep([f"sweep={spec}", "n_trials=1", *sweep_args])
    (conf / "model" / "no_st.yaml").unlink()
    sgd = OmegaConf.load(conf / "optim" / "sgd.yaml")
    sgd.lr = 0.5
    OmegaConf.save(sgd, conf / "optim" / "sgd.yaml")
    sweep([f"sweep={spec}", *sweep_args])
    assert calls == [("no_st", 0.01), ("no_st", 0.01)]
    assert (tmp_path / "sweeps" / "snap" / "conf" / "model" / "no_st.yaml").is_file()
    assert [t.state for t in load_study(tmp_path, "snap").trials] == [TrialState.COMPLETE] * 2
    with pytest.raises(ConfigError, match="do not compose"):  # what a trial composed from conf/ would have met
        compose_train(FAST, conf)


def _unpack(job) -> int:
    snap, target = job
    snapshot.unpack(snap, target)
    return os.stat(target).st_ino


def test_workers_unpacking_the_snapshot_at_once_write_it_once(tmp_path):
    """Workers of a study start together: the folder the first unpacked is never moved from under another's
    trials (CI once lost a grid point to a trial composed from a folder being replaced)."""
    target = tmp_path / "snap" / "conf"
    inodes = at_once(_unpack, (snapshot.pack(CONF), target), processes=6)
    assert inodes == {os.stat(target).st_ino}  # one folder, unpacked once, seen by every worker
    assert (target / "model" / "no_st.yaml").is_file()
    assert sorted(p.name for p in target.parent.iterdir()) == ["conf"]  # no temp or old folder left


@pytest.mark.slow
def test_successive_halving_over_real_runs(tmp_path, sweep_args):
    spec = _sh_spec(tmp_path, "real")
    sweep([f"sweep={spec}", *sweep_args])
    study = load_study(tmp_path, "real")
    assert [t.user_attrs["rung"] for t in study.trials].count(1) == 2
    for t in study.trials:
        assert t.state == TrialState.COMPLETE and t.user_attrs["metrics"]["val/acc_weighted"] == t.value
    assert (tmp_path / "sweeps" / "real" / "curves.png").stat().st_size > 1000


def test_a_trial_projected_far_over_the_time_limit_stops_after_its_first_batches(tiny_overrides):
    """TimeLimitGuard measures the first batches' CPU-time speed; a configuration projected beyond the limit ends
    as a pruned trial with its projection and reason, long before its rung would end."""
    from conftest import compose
    from stnlab.sweeps.fidelity import TimeLimitGuard
    from stnlab.training.run import train

    study = optuna.create_study()
    trial = study.ask()
    guard = TimeLimitGuard(TimeLimit(minutes=1e-4, speedup=1.0), full_epochs=100, trial=trial, skip=1, measure=2)
    cfg = compose(tiny_overrides + ["model=compact_no_st", "trainer.max_epochs=3", "logger=csv"])
    with pytest.raises(optuna.TrialPruned):
        train(cfg, extra_callbacks=[guard])
    assert guard.batches == 3  # of 15 (3 epochs of 5 batches)
    attrs = study.trials[0].user_attrs
    assert attrs["projected_minutes"] > 1e-4 and study.trials[0].constraints[OVER_LIMIT] > 0
    assert attrs["prune_reason"].startswith("over the time limit: full run projected at")


def test_an_interrupted_promotion_runs_again_and_only_a_live_twin_is_a_duplicate():
    f = Fidelity("trainer.max_epochs", (0.5, 1.0), eta=2)
    study = optuna.create_study(direction="maximize")
    _finished(study, 0.1, 0.90)
    _finished(study, 0.2, 0.80)
    study.add_trial(
        create_trial(
            state=TrialState.FAIL, params={"optim.lr": 0.1}, distributions=LR, user_attrs={"rung": 1, "parent": 0}
        )
    )
    assert [t.number for t in due_promotions(study, f)] == [0]  # the failed run of the promotion does not count
    Promote(f)(study, None)
    retry = study.ask()
    assert retry.user_attrs == {"rung": 1, "parent": 0} and duplicate_of(retry) is None
    twin_queue = study.enqueue_trial({"optim.lr": 0.1}, user_attrs={"rung": 1, "parent": 0})  # a second worker's
    assert twin_queue is None
    twin = study.ask()
    assert duplicate_of(twin) == retry.number
