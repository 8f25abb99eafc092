"""Runs as the dashboards see them: identity, the flat config logged once, lr curves, logger groups,
debug runs, multirun, the summary line, no debris, and `src/sync.py` over every kind of offline run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import ROOT, compose, run_script
from stnlab.errors import ConfigError
from stnlab.tracking.run_identity import identity_of, logged_config, run_name, run_tags
from stnlab.tracking.runfile import read_run
from stnlab.training.module import NonFiniteLossError
from stnlab.training.run import train


def _offline(run_dir: Path):
    (folder,) = run_dir.glob("wandb/offline-run-*")
    return read_run(folder)


@pytest.mark.e2e
def test_a_run_is_named_tagged_and_configured_once(tiny_overrides, tmp_path):
    train(
        compose(
            tiny_overrides
            + [
                "model=conv_st",
                "trainer.max_epochs=2",
                "seed=4",
                "optim.momentum=0.9",
                "scheduler=cosine",
                "module.locnet_lr_scale=0.5",
                "identity.experiment=pilot",
            ]
        )
    )
    record = _offline(tmp_path / "run")
    # Overrides beyond the seed (and the paths, logging and progress bar) modify the experiment.
    assert record.name == "pilot+modified-conv_st-affine-gtsrb32-s4"
    tags = {"experiment:pilot+modified", "variant:conv_st", "transform:affine", "dataset:gtsrb", "size:32", "seed:4"}
    assert tags <= set(record.tags)
    config = record.config
    assert config["identity.experiment"] == "pilot" and config["model.name"] == "conv_st"
    modified = config["identity.modified"].split()
    assert {"model=conv_st", "optim.momentum=0.9", "scheduler=cosine", "data.image_size=32"} <= set(modified)
    assert not [m for m in modified if m.split("=")[0] in ("seed", "data.mirror", "data.root", "run_dir")]
    # Each key once: no copies of the wandb, identity and transform sections; paths absolute; the mode in use.
    copies = ("logger.wandb.settings", "logger.wandb.identity", "model.default_transform")
    assert not [k for k in config if k.removeprefix("impl.").startswith(copies)]
    assert config["wandb.project"] == "stnlab" and config["identity.seed"] == 4
    assert config["wandb.mode"] == "offline" and Path(config["paths.data.mirror"]).is_absolute()
    assert not any(k == "cfg" or k.startswith("cfg.") for k in config)  # no nested blob besides the flat keys
    assert not [k for k in config if k.endswith("_target_") and not k.startswith("impl.")]
    assert config["impl.optim._target_"] == "torch.optim.SGD" and "paths.data.root" in config
    # One lr curve per parameter group: the STs' at half the backbone's, both annealed by the cosine.
    backbone, locnet = record.metric("lr-SGD/backbone"), record.metric("lr-SGD/locnet")
    assert len(backbone) >= 2 and backbone[0] == pytest.approx(0.01)
    assert locnet[0] == pytest.approx(0.005) and backbone[-1] < backbone[0]
    assert "baseline/delta_vs_idsia" not in record.summary  # a test over 12 images claims no delta


def _identity(overrides: list[str]) -> tuple[str, str, str, list[str]]:
    cfg = OmegaConf.to_container(compose(overrides), resolve=True)
    i = identity_of(cfg)
    return i["experiment"], i["modified"], run_name(cfg), run_tags(cfg)


@pytest.mark.e2e
def test_only_runs_that_differ_by_their_seed_share_an_identity():
    runs = {
        "s1": ["experiment=compact", "seed=1"],
        "s2": ["experiment=compact", "seed=2", "data.root=/elsewhere", "speed.threads=1", "wandb.tags=[mine]"],
        "s3": ["experiment=compact", "seed=3", "trainer.enable_progress_bar=false", "run_dir=/tmp/x", "test=false"],
        "one_epoch_s5": ["experiment=compact", "seed=5", "trainer.max_epochs=1"],
        "one_epoch_s6": ["trainer.max_epochs=1", "seed=6", "experiment=compact"],
        "no_st": ["experiment=compact", "model=compact_no_st"],
        "no_st_one_epoch": ["experiment=compact", "model=compact_no_st", "trainer.max_epochs=1"],
        "custom": ["seed=4"],
        "custom_lr": ["optim.lr=0.1"],
    }
    identities = {name: _identity(overrides) for name, overrides in runs.items()}
    groups: dict[tuple[str, str], set[str]] = {}
    for name, (experiment, modified, _, _) in identities.items():
        groups.setdefault((experiment, modified), set()).add(name)
    assert sorted(map(sorted, groups.values())) == [
        ["custom"],
        ["custom_lr"],
        ["no_st"],
        ["no_st_one_epoch"],
        ["one_epoch_s5", "one_epoch_s6"],
        ["s1", "s2", "s3"],
    ]
    assert identities["no_st_one_epoch"][1] == "model=compact_no_st trainer.max_epochs=1"  # sorted by key
    _, _, name, tags = identities["one_epoch_s5"]
    assert name == "compact+modified-compact_two_st-affine-gtsrb32-s5" and "experiment:compact+modified" in tags
    assert (
        identities["s2"][2] == "compact-compact_two_st-affine-gtsrb32-s2"
        and "experiment:compact" in identities["s2"][3]
    )
    assert identities["custom_lr"][2] == "custom-two_st-affine-gtsrb48-s1"  # no named experiment: custom, as before


def test_logged_paths_are_absolute_and_copied_sections_logged_once(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    cfg = OmegaConf.to_container(compose(["data.mirror=../shared/gtsrb", "data.root=data"]), resolve=True)
    logged = logged_config(cfg)
    assert logged["paths.data.mirror"] == str(tmp_path.parent / "shared" / "gtsrb")
    assert logged["paths.data.root"] == str(tmp_path / "data")
    assert not [k for k in logged if ".settings." in k or "logger.wandb.identity" in k or "default_transform" in k]
    assert logged["identity.experiment"] == "custom" and logged["wandb.project"] == "stnlab"
    assert logged["transform.name"] == "affine" and logged["impl.transform._target_"].endswith("Affine")


@pytest.mark.e2e
def test_logger_group_selects_the_loggers(tiny_overrides, tmp_path):
    metrics = train(compose(tiny_overrides + ["model=no_st", "trainer.max_epochs=1", "logger=[csv,tensorboard]"]))
    run = tmp_path / "run"
    assert not (run / "wandb").exists() and (run / "csv" / "metrics.csv").is_file()
    assert list((run / "tensorboard").rglob("events.out.tfevents.*"))
    assert (run / "metrics.json").is_file() and metrics["val/acc_best"] >= 0


@pytest.mark.e2e
def test_a_run_without_loggers_still_writes_its_metrics(tiny_overrides, tmp_path):
    metrics = train(compose(tiny_overrides + ["model=no_st", "trainer.max_epochs=1", "logger=none"]))
    run = tmp_path / "run"
    assert (run / "metrics.json").is_file() and not (run / "csv").exists() and not (run / "wandb").exists()
    assert metrics["val/acc_best"] >= 0


@pytest.mark.e2e
def test_a_debug_run_is_marked_and_left_out_of_comparisons(tiny_overrides, tmp_path):
    from stnlab.evaluation.compare import find_runs, read_runs

    train(compose(tiny_overrides + ["model=no_st", "debug=limit", "trainer.limit_train_batches=2"]))
    record = _offline(tmp_path / "run")
    assert record.name.endswith("-debug_limit") and "debug" in record.tags
    with pytest.raises(ConfigError, match="every run found is a debug run"):
        read_runs(find_runs([str(tmp_path / "run")]))
    assert len(read_runs(find_runs([str(tmp_path / "run")]), include_debug=True)) == 1


@pytest.mark.e2e
def test_synthetic_data_gets_no_committee_delta(tmp_path):
    metrics = train(
        compose(
            [
                "data=synth",
                "data.num_train=64",
                "data.num_val=32",
                "data.num_test=32",
                "model=no_st",
                "model.backbone.widths=[8,8,8]",
                "model.backbone.fc=16",
                "trainer.max_epochs=1",
                f"run_dir={tmp_path / 'run'}",
                "trainer.enable_progress_bar=false",
            ]
        )
    )
    record = _offline(tmp_path / "run")
    assert "test/acc" in metrics and "baseline/delta_vs_idsia" not in record.summary


def _cli(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_script(
        script, *args, cwd=cwd, env={"WANDB_MODE": "offline", "PYTHONPATH": str(ROOT / "src")}, timeout=600
    )


TINY_CLI = [
    "data.image_size=32",
    "data.batch_size=8",
    "data.eval_batch_size=16",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.max_epochs=1",
]


@pytest.mark.e2e
def test_multirun_jobs_share_a_group_and_have_readable_folders(gtsrb_mirror, tmp_path):
    res = _cli(
        "train.py",
        "-m",
        "model=no_st,conv_st",
        f"data.mirror={gtsrb_mirror}",
        f"data.root={tmp_path / 'd'}",
        *TINY_CLI,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    jobs = sorted(p for p in (tmp_path / "outputs" / "multirun").glob("*/*/*") if (p / "metrics.json").is_file())
    assert [p.name for p in jobs] == ["0-no_st-affine-s1", "1-conv_st-affine-s1"]
    groups = {_offline(job).group for job in jobs}
    assert len(groups) == 1 and groups.pop().startswith("multirun-")
    # train.py's command line modifies the run (not its data paths): identity.modified, from Hydra's overrides.
    modified = _offline(jobs[0]).config["identity.modified"].split()
    assert "model=no_st" in modified and "trainer.max_epochs=1" in modified
    assert not [m for m in modified if m.startswith(("data.mirror=", "data.root=", "trainer.enable_"))]
    # compare.py: the multirun group is a column, and identity.modified is read back from .hydra/overrides.yaml.
    from stnlab.evaluation.compare import read_runs, table

    runs = read_runs(jobs)
    rows, columns = table(runs)
    assert columns[:3] == ["run", "identity", "group"] and {r["group"] for r in rows} == {_offline(jobs[0]).group}
    assert [r.config["identity.modified"].split() for r in runs][0] == modified
    # Each job ends with its one summary line.
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("stnlab: run ")]
    assert len(lines) == 2 and all("val/acc_best" in ln and "test/acc" in ln and "Δ vs 99.46" in ln for ln in lines)
    # compare.py's default covers outputs/multirun.
    from stnlab.evaluation.compare import find_runs

    assert sorted(find_runs([], tmp_path / "outputs")) == jobs


@pytest.mark.e2e
def test_a_rejected_run_leaves_no_folder_and_no_wandb_run(gtsrb_mirror, tmp_path):
    bad_lr = _cli("train.py", "optim.lr=-1", *TINY_CLI, cwd=tmp_path)
    no_data = _cli(
        "train.py", f"data.mirror={tmp_path / 'nowhere'}", f"data.root={tmp_path / 'd'}", *TINY_CLI, cwd=tmp_path
    )
    for res in (bad_lr, no_data):
        assert res.returncode == 2 and res.stderr.strip().splitlines()[-1].startswith("stnlab: error:")
    assert not list((tmp_path / "outputs" / "runs").glob("*/*")) if (tmp_path / "outputs").exists() else True
    assert not list(tmp_path.rglob("offline-run-*"))


@pytest.mark.e2e
def test_sync_dry_run_lists_every_kind_and_skips_failed_and_debug(tiny_overrides, gtsrb_mirror, tmp_path):
    from stnlab.evaluation.checkpoint_report import evaluate_checkpoint
    from stnlab.tracking.wandb_logger import open_run

    outputs = tmp_path / "outputs"
    base = [o for o in tiny_overrides if not o.startswith("run_dir=")] + ["model=no_st", "trainer.max_epochs=1"]
    metrics = train(compose(base + [f"run_dir={outputs / 'runs' / 'day' / 'good'}"]))
    train(compose(base + [f"run_dir={outputs / 'runs' / 'day' / 'dbg'}", "debug=limit"]))
    train(compose(base + [f"run_dir={outputs / 'sweeps' / 'study' / 'trial_0'}"]))
    with pytest.raises(NonFiniteLossError):
        train(compose(base + [f"run_dir={outputs / 'runs' / 'day' / 'bad'}", "optim.lr=1e30", "trainer.max_epochs=3"]))
    evaluate_checkpoint(metrics["best_checkpoint"], "test", wandb_mode="offline")
    for kind, folder in (("robustness", outputs / "robustness"), ("report", outputs / "sweeps" / "study")):
        run = open_run({}, folder, f"a-{kind}", kind, {}, mode="offline")
        run.finish()
    res = _cli("sync.py", "dry_run=true", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.splitlines()
    chosen = [ln.split()[1] for ln in lines if ln.startswith("sync ")]
    assert sorted(chosen) == ["eval", "report", "robustness", "train", "trial"]
    skipped = " ".join(ln for ln in lines if ln.startswith("skip "))
    assert "(failed)" in skipped and "(debug)" in skipped
    assert "5 of 7 offline run(s) to upload (dry run" in res.stdout
    everything = _cli(
        "sync.py", "dry_run=true", "include_failed=true", "include_debug=true", "kinds=[train]", cwd=tmp_path
    )
    assert sum(ln.startswith("sync ") for ln in everything.stdout.splitlines()) == 3


def test_sync_reports_a_corrupt_or_doubled_run_file_and_lists_the_others(tmp_path):
    import shutil

    from stnlab.tracking.wandb_logger import open_run

    outputs = tmp_path / "outputs"
    folders = {}
    for name in ("good", "corrupt", "doubled"):
        run = open_run({}, outputs / "robustness" / name, f"a-{name}", "robustness", {}, mode="offline")
        run.finish()
        (folders[name],) = (outputs / "robustness" / name).rglob("offline-run-*")
    (corrupt,) = folders["corrupt"].glob("run-*.wandb")
    corrupt.write_bytes(b"\0" * 4096)  # zeroed by a bad disk or copy
    (doubled,) = folders["doubled"].glob("run-*.wandb")
    shutil.copy(doubled, doubled.with_name("run-copy.wandb"))
    res = _cli("sync.py", "dry_run=true", cwd=tmp_path)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr[-2000:]
    lines = res.stdout.splitlines()
    assert [ln.split()[3] for ln in lines if ln.startswith("sync ")] == ["a-good"]
    skipped = {n: [ln for ln in lines if str(folders[n].relative_to(tmp_path)) in ln] for n in ("corrupt", "doubled")}
    assert all(len(found) == 1 and found[0].startswith("skip ") for found in skipped.values()), lines
    assert "(unreadable: ValueError: " in skipped["corrupt"][0] and "not a W&B run file" in skipped["corrupt"][0]
    assert "holds 2 run-*.wandb files" in skipped["doubled"][0]
    assert "1 of 3 offline run(s) to upload (dry run" in res.stdout
    assert res.stderr.count("its W&B run file is unreadable") == 2
