"""Runs that fail, get killed, race or lose the network: stopped with one line, resumed to the same numbers,
never corrupted, never hung. Tiny network (widths 8) on the tiny archives, so each run takes seconds."""

from __future__ import annotations

import csv
import hashlib
import http.server
import json
import logging
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from conftest import ROOT, at_once, compose, run_script
from stnlab.errors import ConfigError, StnlabError
from stnlab.training.module import NonFiniteLossError, build_module
from stnlab.training.run import train

TESTS = Path(__file__).resolve().parent


def tiny_run(mirror: Path, data_root: Path, run_dir: Path | None, *extra: str) -> list[str]:
    """A 2-epoch run of a conv_st network of width 8 with jitter, a last.ckpt every 2 steps (3 steps per epoch)."""
    return [
        f"data.mirror={mirror}",
        f"data.root={data_root}",
        *([f"run_dir={run_dir}"] if run_dir else []),
        "data.image_size=16",
        "data.batch_size=8",
        "data.eval_batch_size=16",
        "model=conv_st",
        "model.backbone.widths=[8,8,8]",
        "model.backbone.fc=16",
        "model.transformers.input.locnet.widths=[8,8,8]",
        "augment=jitter",
        "optim.lr=0.05",
        "seed=5",
        "trainer.max_epochs=2",
        "trainer.accelerator=cpu",
        "trainer.log_every_n_steps=1",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "trainer.num_sanity_val_steps=0",
        "checkpoint.every_n_train_steps=2",
        "wandb.mode=disabled",
        "callbacks.test_report=null",
        *extra,
    ]


def step_losses(run_dir: Path) -> dict[int, float]:
    """train/loss_step by global step from every CSV part of a run (a resumed part wins)."""
    out: dict[int, float] = {}
    for part in sorted(run_dir.glob("csv/**/metrics.csv")):  # csv/metrics.csv, then csv/resume-1/...
        for row in csv.DictReader(part.open()):
            if row.get("train/loss_step"):
                out[int(row["step"])] = float(row["train/loss_step"])
    return out


def epoch_metrics(run_dir: Path) -> dict[tuple[int, str], float]:
    out = {}
    for part in sorted(run_dir.glob("csv/**/metrics.csv")):
        for row in csv.DictReader(part.open()):
            for key in ("val/loss", "val/acc"):
                if row.get(key):
                    out[(int(row["epoch"]), key)] = float(row[key])
    return out


FINAL = ("val/acc_best", "test/acc", "test/loss")


class Crash(Exception):
    pass


class CrashAt(pl.Callback):
    """Fault injection: at the start of the batch after global step ``step``, crash (or SIGKILL the process)."""

    def __init__(self, step: int, kill: bool = False):
        self.step, self.kill = step, kill

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            if self.kill:
                os.kill(os.getpid(), signal.SIGKILL)
            raise Crash(f"injected crash after step {self.step}")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")  # shared: the cache is decoded once for the module


@pytest.fixture(scope="module")
def reference(gtsrb_mirror, data_root, tmp_path_factory):
    """Run A: uninterrupted, 2 epochs. Returns (metrics, run_dir)."""
    run = tmp_path_factory.mktemp("A") / "run"
    return train(compose(tiny_run(gtsrb_mirror, data_root, run))), run


def _cli(*args: str, cwd: Path, extra_env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {"WANDB_MODE": "disabled", "PYTHONPATH": str(TESTS), **(extra_env or {})}
    return run_script("train.py", *args, cwd=cwd, env=env, timeout=timeout)


# --- reproducibility and resuming ---------------------------------------------------------------------


def test_same_seed_same_metrics_on_cpu(reference, gtsrb_mirror, data_root, tmp_path):
    metrics, run_a = reference
    again = train(compose(tiny_run(gtsrb_mirror, data_root, tmp_path / "run")))
    assert {k: again[k] for k in FINAL} == {k: metrics[k] for k in FINAL}
    assert step_losses(tmp_path / "run") == step_losses(run_a) and len(step_losses(run_a)) == 6
    assert epoch_metrics(tmp_path / "run") == epoch_metrics(run_a)


def test_crash_mid_epoch_then_resume_last_gives_the_same_run(reference, gtsrb_mirror, data_root, tmp_path):
    metrics, run_a = reference
    run_b = tmp_path / "run"
    cfg = tiny_run(gtsrb_mirror, data_root, run_b)
    with pytest.raises(Crash):  # after step 4 = the first of 3 batches of epoch 2, with a last.ckpt at step 4
        train(compose(cfg), extra_callbacks=[CrashAt(4)])
    assert not (run_b / "metrics.json").exists()
    resumed = train(compose(cfg + ["resume=last"]))
    # Same weights, data order and jitter draws after the resume: every number matches the uninterrupted run.
    assert {k: resumed[k] for k in FINAL} == {k: metrics[k] for k in FINAL}
    assert step_losses(run_b) == step_losses(run_a)
    assert epoch_metrics(run_b) == epoch_metrics(run_a)
    # The resumed part wrote beside the first, in the same run directory; nothing of the first part was lost.
    assert (run_b / "csv" / "metrics.csv").is_file() and (run_b / "csv" / "resume-1" / "metrics.csv").is_file()
    # ...and it started mid-epoch, from the step-4 checkpoint (not from the end of epoch 1): 2 steps left.
    resumed_steps = [
        int(r["step"])
        for r in csv.DictReader((run_b / "csv" / "resume-1" / "metrics.csv").open())
        if r.get("train/loss_step")
    ]
    assert resumed_steps == sorted(step_losses(run_a))[-2:]
    assert json.loads((run_b / "metrics.json").read_text())["test/acc"] == metrics["test/acc"]
    assert resumed["perf/train_img_per_s"] > 1  # timed from the resume, not from the epoch start it never saw
    # Resuming with another network is refused before any work, naming the difference and the fix.
    with pytest.raises(
        ConfigError,
        match=r"another network \(model.backbone.fc: 16 in the checkpoint, 32 now\).*"
        r"resume with the run's own overrides",
    ):
        train(compose(cfg + ["resume=last", "model.backbone.fc=32"]))


def test_val_acc_best_survives_a_resume():
    """torchmetrics states are not in the state_dict: without the module's checkpoint hook a resumed run
    would report the best of the epochs after the resume only."""
    cfg = compose(["model=no_st", "data.image_size=16", "model.backbone.widths=[4,4,4]", "model.backbone.fc=8"])
    from omegaconf import OmegaConf

    resolved = OmegaConf.to_container(cfg, resolve=True)
    before = build_module(resolved)
    before.val_acc_best.update(torch.tensor(0.75))
    checkpoint: dict = {}
    before.on_save_checkpoint(checkpoint)
    after = build_module(resolved)
    after.on_load_checkpoint(checkpoint)
    after.val_acc_best.update(torch.tensor(0.5))  # a worse epoch after the resume
    assert float(after.val_acc_best.compute()) == 0.75


def test_resume_last_finds_the_latest_run(tmp_path, monkeypatch):
    from stnlab.run_dirs import resolve_resume

    monkeypatch.chdir(tmp_path)
    for name, age in (("2026-01-01/10-00-00-two_st", 100), ("2026-01-02/09-00-00-no_st", 10)):
        ckpt = tmp_path / "outputs" / "runs" / name / "checkpoints" / "last.ckpt"
        ckpt.parent.mkdir(parents=True)
        torch.save({"x": 1}, ckpt)
        os.utime(ckpt, (time.time() - age, time.time() - age))
    ckpt, run_dir = resolve_resume("last")
    assert run_dir == Path("outputs/runs/2026-01-02/09-00-00-no_st") and ckpt == run_dir / "checkpoints" / "last.ckpt"
    # A run directory works too, and a checkpoint file.
    assert resolve_resume("outputs/runs/2026-01-01/10-00-00-two_st")[1] == Path(
        "outputs/runs/2026-01-01/10-00-00-two_st"
    )
    assert resolve_resume(str(ckpt)) == (ckpt, run_dir)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_mid_epoch_then_cli_resume_last(reference, gtsrb_mirror, data_root, tmp_path):
    """The real thing through the CLI: SIGKILL mid-epoch, then `train.py ... resume=last` with no run_dir."""
    metrics, run_a = reference
    cfg = tiny_run(gtsrb_mirror, data_root, None)
    killed = _cli(*cfg, "+callbacks.kill={_target_:test_reliability_runs.CrashAt,step:4,kill:true}", cwd=tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    (run_b,) = (tmp_path / "outputs" / "runs").glob("*/*")
    assert (run_b / "checkpoints" / "last.ckpt").is_file() and not (run_b / "metrics.json").exists()
    resumed = _cli(*cfg, "resume=last", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert list((tmp_path / "outputs" / "runs").glob("*/*")) == [run_b]  # no second run directory
    assert (run_b / ".hydra" / "overrides.yaml").is_file() and list((run_b / ".hydra").glob("resume-*/overrides.yaml"))
    final = json.loads((run_b / "metrics.json").read_text())
    assert {k: final[k] for k in FINAL} == {k: metrics[k] for k in FINAL}
    assert step_losses(run_b) == step_losses(run_a)


# --- numerical faults ---------------------------------------------------------------------------------


def test_non_finite_loss_stops_the_cli_with_one_line(gtsrb_mirror, tmp_path):
    assert issubclass(NonFiniteLossError, StnlabError)  # a sweep marks the trial failed and goes on
    res = _cli(
        *tiny_run(gtsrb_mirror, tmp_path / "data", tmp_path / "run", "optim.lr=1e30", "augment=none"), cwd=tmp_path
    )
    assert res.returncode == 2, res.stderr[-3000:]
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("stnlab: error: training loss became") and "at step" in last and "lower optim.lr" in last
    assert "Traceback" not in res.stderr


# --- concurrency --------------------------------------------------------------------------------------


def _build_cache(cache_dir: str, counter: str, barrier, results) -> None:
    from stnlab.data.gtsrb import Split, cached

    def build():
        with open(counter, "a") as f:
            f.write("decode\n")
        time.sleep(1.0)  # a slow decode: the other process arrives meanwhile
        g = torch.Generator().manual_seed(0)
        return Split(
            torch.randint(0, 256, (50, 3, 16, 16), dtype=torch.uint8, generator=g),
            torch.arange(50) % 43,
            torch.arange(50),
        )

    barrier.wait()
    split = cached(Path(cache_dir), "train", {"image_size": 16}, build)
    results.put(hashlib.sha1(split.images.numpy().tobytes()).hexdigest())


@pytest.mark.timeout(120)
def test_two_processes_building_one_cache_decode_once(tmp_path):
    ctx = mp.get_context("fork")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    counter = tmp_path / "decodes.txt"
    procs = [
        ctx.Process(target=_build_cache, args=(str(tmp_path / "cache"), str(counter), barrier, results))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    digests = [results.get(timeout=90) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert counter.read_text().count("decode") == 1  # the second waited on the lock, then read the cache
    assert digests[0] == digests[1]
    assert len(list((tmp_path / "cache").glob("train-*.pt"))) == 1 and not list((tmp_path / "cache").glob("*.part"))


def _hold_lock_and_die(cache_dir: str) -> None:
    from stnlab.data.gtsrb import cached

    def build():
        os.kill(os.getpid(), signal.SIGKILL)  # killed while decoding, holding the lock

    cached(Path(cache_dir), "train", {"image_size": 16}, build)


@pytest.mark.timeout(60)
def test_a_writer_killed_while_holding_the_lock_does_not_block_the_next(tmp_path):
    from stnlab.data.gtsrb import Split, cached

    p = mp.get_context("fork").Process(target=_hold_lock_and_die, args=(str(tmp_path),))
    p.start()
    p.join(30)
    assert p.exitcode == -signal.SIGKILL
    split = cached(
        tmp_path,
        "train",
        {"image_size": 16},
        lambda: Split(torch.zeros(2, 3, 1, 1, dtype=torch.uint8), torch.tensor([0, 1]), torch.tensor([0, 1])),
    )
    assert len(split) == 2


# --- W&B without credentials or server ----------------------------------------------------------------


@pytest.fixture
def wandb_env(monkeypatch, tmp_path):
    for key in ("WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_MODE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_MODE", "online")
    return monkeypatch


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "W&B" in r.getMessage()]


def test_wandb_online_without_a_key_logs_offline_with_one_warning(wandb_env, caplog):
    from stnlab.tracking.wandb_logger import resolve_mode

    with caplog.at_level(logging.WARNING):
        assert resolve_mode(None) == "offline"
    (warning,) = _warnings(caplog)
    assert "no API key" in warning and "wandb sync" in warning


@pytest.mark.timeout(30)
@pytest.mark.parametrize("server", ["closed_port", "silent"])
def test_wandb_server_down_or_silent_logs_offline_quickly(server, wandb_env, caplog):
    """A refused port, and a server that accepts connections but never answers (W&B itself would wait on it
    for 80 s, then crash the run)."""
    from stnlab.tracking.wandb_logger import resolve_mode

    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    if server == "closed_port":
        sock.close()
    wandb_env.setenv("WANDB_API_KEY", "f" * 40)
    wandb_env.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    start = time.monotonic()
    try:
        with caplog.at_level(logging.WARNING):
            assert resolve_mode(None) == "offline"
    finally:
        sock.close()
    assert time.monotonic() - start < 10
    (warning,) = _warnings(caplog)
    assert "unreachable" in warning


class _Reject(http.server.BaseHTTPRequestHandler):
    def _reject(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"errors": [{"message": "invalid API key"}]}')

    do_GET = do_POST = _reject

    def log_message(self, *args):
        pass


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_wandb_rejected_key_falls_back_to_offline(wandb_env, caplog, tmp_path):
    """A server that answers but rejects the key: wandb.init raises; the run goes on offline."""
    from stnlab.tracking.wandb_logger import make_wandb_logger

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Reject)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    wandb_env.setenv("WANDB_API_KEY", "f" * 40)
    wandb_env.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}")
    try:
        with caplog.at_level(logging.WARNING):
            logger = make_wandb_logger(tmp_path, {}, {"model": "m", "image_size": 16})
        assert logger is not None and logger.experiment.settings.mode in ("offline", "dryrun")
        logger.experiment.finish()
    finally:
        server.shutdown()
    (warning,) = _warnings(caplog)
    assert "online start failed" in warning and "logging offline" in warning


# --- run folders (issue 16, item 1) -------------------------------------------------------------------


def _claim(default: str) -> str:
    from stnlab.run_dirs import _run_dir_resolver

    return _run_dir_resolver(None, None, default)  # what hydra.run.dir resolves to in each process


@pytest.mark.timeout(60)
@pytest.mark.parametrize("processes", [2, 5])
def test_runs_started_in_the_same_second_get_their_own_folders(processes, tmp_path):
    default = str(tmp_path / "outputs" / "runs" / "2026-12-02" / "10-00-00-no_st")
    dirs = at_once(_claim, default, processes)
    assert dirs == {default} | {f"{default}-{k}" for k in range(2, processes + 1)}
    assert all(Path(d).is_dir() and not any(Path(d).iterdir()) for d in dirs)


def test_cli_run_lands_beside_a_run_started_in_the_same_second(gtsrb_mirror, data_root, tmp_path):
    """The default folder (<date>/<H-M-S>-<model>) is taken for the next 15 minutes (a loaded machine may take
    minutes to start Python): the run gets <...>-2."""
    now = time.time()
    taken = []
    for t in range(int(now), int(now) + 900):
        d = (
            tmp_path
            / "outputs"
            / "runs"
            / time.strftime("%Y-%m-%d", time.localtime(t))
            / f"{time.strftime('%H-%M-%S', time.localtime(t))}-no_st"
        )
        (d / "csv").mkdir(parents=True)
        taken.append(d)
    # It passes its checks, then fails in training: the folder it claimed holds its run.
    res = _cli(
        "model=no_st",
        f"data.mirror={gtsrb_mirror}",
        f"data.root={data_root}",
        "data.image_size=32",
        "optim.lr=1e30",
        "trainer.max_epochs=3",
        "trainer.accelerator=cpu",
        cwd=tmp_path,
    )
    assert res.returncode == 2 and "training loss became" in res.stderr.strip().splitlines()[-1]
    assert all(sorted(p.name for p in d.iterdir()) == ["csv"] for d in taken)  # nothing written into them
    (mine,) = [d for d in (tmp_path / "outputs" / "runs").glob("*/*") if d not in taken]
    assert mine.name.endswith("-no_st-2") and (mine / ".hydra" / "config.yaml").is_file()


@pytest.mark.parametrize("marker", ["metrics.json", "checkpoints/last.ckpt", "csv/metrics.csv"])
def test_run_dir_of_another_run_is_refused_and_left_alone(marker, gtsrb_mirror, data_root, tmp_path):
    other = tmp_path / "other"
    (other / ".hydra").mkdir(parents=True)
    (other / ".hydra" / "config.yaml").write_text("model:\n  name: two_st\n")
    (other / marker).parent.mkdir(parents=True, exist_ok=True)
    (other / marker).write_text("theirs")
    before = sorted((p.relative_to(other), p.stat().st_mtime_ns) for p in other.rglob("*"))
    with pytest.raises(
        ConfigError,
        match=f"run_dir={other} already holds a run \\(model two_st\\); pick a new "
        f"run_dir, or continue that run with resume=last run_dir={other}",
    ):
        train(compose(tiny_run(gtsrb_mirror, data_root, other)))
    assert sorted((p.relative_to(other), p.stat().st_mtime_ns) for p in other.rglob("*")) == before


# --- resuming onto other data, runs without validation (issue 16, item 6) -------------------------------


@pytest.mark.parametrize(
    "override, diff",
    [
        ("data.crop_roi=true", "data.crop_roi: False in the checkpoint, True now"),
        ("data.split_seed=3", "data.split_seed: 0 in the checkpoint, 3 now"),
        ("data.val_tracks_per_class=2", "data.val_tracks_per_class: 1 in the checkpoint, 2 now"),
    ],
)
def test_resume_onto_other_data_is_refused(override, diff, reference, gtsrb_mirror, data_root, tmp_path):
    _, run_a = reference
    ckpt = run_a / "checkpoints" / "last.ckpt"
    with pytest.raises(
        ConfigError, match=f"trained on other data \\({diff}\\); its val/acc_best would not be comparable"
    ):
        train(compose(tiny_run(gtsrb_mirror, data_root, tmp_path / "run", f"resume={ckpt}", override)))
    assert not (tmp_path / "run").exists()
    # Where the data lies and how it is batched may change (another machine, another batch size).
    from omegaconf import OmegaConf

    from stnlab.training.resume import check_compatible

    moved = compose(tiny_run(tmp_path / "elsewhere", tmp_path / "root", None, "data.eval_batch_size=4"))
    check_compatible(ckpt, OmegaConf.to_container(moved, resolve=True))


@pytest.mark.parametrize("override", ["trainer.limit_val_batches=0", "data.val_tracks_per_class=0"])
def test_a_run_without_validation_says_so_and_completes(override, gtsrb_mirror, data_root, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="stnlab"):
        metrics = train(compose(tiny_run(gtsrb_mirror, data_root, tmp_path / "run", override, "trainer.max_epochs=1")))
    warned = [r.getMessage() for r in caplog.records if "no validation" in r.getMessage()]
    assert len(warned) == 1 and override.split(".")[-1] in warned[0] and "the last epoch is checkpointed" in warned[0]
    assert "val/acc_best" not in metrics and "test/acc" in metrics
    assert (tmp_path / "run" / "metrics.json").is_file()


# --- W&B trouble after training (issue 16, item 4) ----------------------------------------------------


@pytest.mark.timeout(300)
@pytest.mark.parametrize("where", ["under_a_file", "is_a_file"])
def test_unwritable_wandb_data_dir_warns_and_the_run_completes(
    where, gtsrb_mirror, data_root, tmp_path, monkeypatch, caplog
):
    """W&B stages the test report's table images in WANDB_DATA_DIR (default ~/.local/share/wandb): unwritable,
    it raised PermissionError after training and the finished run was lost (exit 1, no metrics.json)."""
    from stnlab.tracking.runfile import read_run

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("WANDB_DATA_DIR", str(blocker / "wandb" if where == "under_a_file" else blocker))
    run = tmp_path / "run"
    cfg = tiny_run(
        gtsrb_mirror,
        data_root,
        run,
        "trainer.max_epochs=1",
        "wandb.mode=offline",
        "callbacks.test_report={_target_:stnlab.evaluation.TestReport,max_errors:4}",
    )
    with caplog.at_level(logging.WARNING):
        metrics = train(compose(cfg))
    (warning,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("W&B:")]
    assert "media were not logged" in warning and "WANDB_DATA_DIR" in warning
    assert {"val/acc_best", "test/acc", "test/f1_macro"} <= set(metrics)
    assert json.loads((run / "metrics.json").read_text())["test/acc"] == metrics["test/acc"]
    assert (run / "eval" / "test_report.json").is_file()
    (wandb_run,) = (run / "wandb").glob("offline-run-*")
    assert read_run(wandb_run).complete  # closed normally, with its summary


def test_the_metric_names_a_sweep_may_use_are_what_a_run_reports(reference):
    """stnlab.config.schema.RUN_METRICS / VAL_EPOCH_METRICS (the sweep preflight's lists) against a real run."""
    from stnlab.config.schema import RUN_METRICS, VAL_EPOCH_METRICS

    metrics, run_a = reference
    assert set(metrics) - {"best_checkpoint"} <= set(RUN_METRICS)
    assert {"val/acc_best", "test/acc", "test/loss", "time/fit_s", "model/params"} <= set(metrics)
    columns = set(next(csv.reader((run_a / "csv" / "metrics.csv").open())))
    assert set(VAL_EPOCH_METRICS) <= columns


# --- a full disk under run_dir (issue 16, item 7) -----------------------------------------------------


def _small_disk(limit: int):
    def limit_file_size():
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    return limit_file_size


@pytest.mark.timeout(300)
def test_full_disk_under_run_dir_is_one_line_and_leaves_no_truncated_checkpoint(
    reference, gtsrb_mirror, data_root, tmp_path
):
    """Checkpoints of this network are ~48 kB; every other file of the run is smaller than 20 kB."""
    run = tmp_path / "run"
    env = dict(os.environ, WANDB_MODE="disabled")
    env.pop("HYDRA_FULL_ERROR", None)
    res = subprocess.run(
        [sys.executable, str(ROOT / "src" / "train.py"), *tiny_run(gtsrb_mirror, data_root, run)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        preexec_fn=_small_disk(20_000),
    )
    assert res.returncode == 2, res.stderr[-3000:]
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith(f"stnlab: error: cannot write {run}/checkpoints/") and "File too large" in last
    assert f"then continue with resume=last run_dir={run}" in last and "Traceback" not in res.stderr
    assert not list(run.rglob("*.part")) and not (run / "metrics.json").exists()
    assert not list((run / "checkpoints").glob("*.ckpt"))  # none truncated under a final name (was a cut last.ckpt)
