"""One training run from a composed Hydra config: the code path of ``train.py`` and of every sweep trial."""

from __future__ import annotations

import json
import logging
import re
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, WeightAveraging
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from stnlab import IDSIA_COMMITTEE_ACC, committee_delta
from stnlab.config.schema import no_validation, sense, validate
from stnlab.errors import ConfigError, described
from stnlab.files import write_text_whole
from stnlab.noise import silence_known_noise
from stnlab.run_dirs import claim_run, holds_run, refusal, release_run, resolve_resume, run_dir_of, runs_dir_of
from stnlab.tracking.checkpoint_io import NO_ROOM, AtomicCheckpointIO, no_room
from stnlab.tracking.run_identity import identity_of, logged_config, mark_modified
from stnlab.tracking.wandb_logger import write_summary
from stnlab.training.callbacks import EpochCheckpoints, RunTimeEstimate
from stnlab.training.interrupt import RunInterrupted, StopOnSignal
from stnlab.training.module import build, build_module
from stnlab.training.resume import check_compatible
from stnlab.training.speed import SpeedSwitches

log = logging.getLogger(__name__)


def train(cfg: DictConfig, extra_callbacks: list | None = None) -> dict[str, Any]:
    """Fit, then test the best checkpoint (when test labels exist). Returns the final metrics.

    Everything that can be checked is checked before the run opens a logger: the values, the network, the
    resume checkpoint, the run folder (claimed for this process), the data (downloaded, decoded and cached). A
    run stopped there leaves no run folder (Hydra's, holding only its .hydra/, is removed) and no W&B run."""
    _join_multirun_group(cfg)
    _modified_by_the_command_line(cfg)
    _one_line_per_log_record()
    silence_known_noise()
    resolved: dict = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    hydra = _hydra_config()
    run_dir, made = None, False
    try:
        # Hydra was sent to a scratch folder (made before train()): the run's own was refused.
        refused = refusal(hydra.runtime.output_dir) if hydra is not None else None
        if refused is not None:
            raise refused
        validate(resolved)
        # resume=last|PATH: the checkpoint and its run directory, which the resumed run writes into.
        ckpt_path, resumed_dir = resolve_resume(resolved.get("resume"), resolved.get("run_dir"), runs_dir_of(resolved))
        run_dir = Path(cfg.run_dir) if cfg.get("run_dir") else resumed_dir or run_dir_of(cfg)
        pl.seed_everything(resolved.get("seed", 0), workers=True, verbose=False)
        module = build_module(resolved)
        if ckpt_path is not None:
            check_compatible(ckpt_path, resolved)
            log.info("resuming from %s into %s", ckpt_path, run_dir)
        if rank_zero_only.rank == 0:  # DDP workers share rank 0's folder
            made = not run_dir.exists()
            claim_run(run_dir, resumed_dir)  # a resumed run continues its own folder, elsewhere it is a new run
        datamodule = build(resolved["data"], "data")
        speed = SpeedSwitches(resolved.get("speed"))  # checks the speed: section before any run is opened
        if rank_zero_only.rank == 0:
            datamodule.prepare_data()  # missing or broken data fails here, before any logger
    except BaseException:
        _undo_start(hydra, run_dir, made)
        raise
    try:
        return _run(resolved, module, datamodule, run_dir, ckpt_path, speed, extra_callbacks)
    finally:
        release_run(run_dir)


def _run(resolved, module, datamodule, run_dir, ckpt_path, speed, extra_callbacks) -> dict[str, Any]:
    """The fit and test of a claimed run folder, its W&B run closed however they end."""
    run_dir.mkdir(parents=True, exist_ok=True)  # made by rank 0's claim; DDP workers may get there first
    loggers = make_loggers(resolved, run_dir)
    try:
        metrics = _fit_and_test(resolved, module, datamodule, run_dir, ckpt_path, loggers, speed, extra_callbacks)
    except OSError as e:
        _close_wandb(loggers, exit_code=1)
        if e.errno in NO_ROOM:  # the CSV log, metrics.json, ... on a full disk: one line, not a traceback
            raise no_room(run_dir, e.filename or run_dir, e.strerror or str(e)) from None
        raise
    except BaseException as e:
        # A sweep trial stopped by its pruner ended as planned: its W&B run is not a failed one.
        _close_wandb(loggers, exit_code=0 if type(e).__name__ == "TrialPruned" else 1)
        raise
    _close_wandb(loggers, exit_code=0)
    return metrics


def _undo_start(hydra, run_dir: Path | None, made: bool) -> None:
    """A start refused by its checks leaves nothing: the folders made for it, and Hydra's record of a resume
    (``.hydra/resume-<time>/`` in the run's folder) that did not happen."""
    if run_dir is not None:
        release_run(run_dir)
    if rank_zero_only.rank != 0:
        return
    if hydra is not None:
        record = Path(hydra.runtime.output_dir) / str(hydra.output_subdir or "")
        if record.name.startswith("resume-"):
            shutil.rmtree(record, ignore_errors=True)
        discard_if_unused(Path(hydra.runtime.output_dir))
    if made:
        discard_if_unused(run_dir)


def _hydra_config():
    return HydraConfig.get() if HydraConfig.initialized() else None


def _one_line_per_log_record() -> None:
    """Lightning gives its loggers their own console handler when it is imported before logging is set up;
    once Hydra has set up the root logger, each record would print twice."""
    if not logging.getLogger().handlers:
        return
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        lg = logging.getLogger(name)
        for handler in [h for h in lg.handlers if type(h) is logging.StreamHandler]:
            lg.removeHandler(handler)
        lg.propagate = True


def _join_multirun_group(cfg: DictConfig) -> None:
    """Jobs of one ``train.py -m`` share a W&B group named after their multirun folder."""
    hydra = _hydra_config()
    if hydra is not None and hydra.mode == RunMode.MULTIRUN and not cfg.wandb.get("group"):
        cfg.wandb.group = "multirun-" + "_".join(Path(hydra.sweep.dir).parts[-2:])


def _modified_by_the_command_line(cfg: DictConfig) -> None:
    """``identity.modified`` of a ``train.py`` run, from its command line (configs made by
    :func:`stnlab.config.compose_train`, such as sweep trials', have it already)."""
    hydra = _hydra_config()
    if hydra is not None and cfg.get("identity") is not None and cfg.identity.get("modified") is None:
        mark_modified(cfg, list(hydra.overrides.task))


def make_loggers(resolved: dict, run_dir: Path) -> list:
    """The ``logger`` group's loggers, each completed with ``save_dir=<run dir>`` and given the flat config once
    (W&B's run config, the CSV log's hparams.yaml)."""
    hydra = _hydra_config()
    config = logged_config(resolved, dict(hydra.runtime.choices) if hydra is not None else None)
    nodes = (resolved.get("logger") or {}).items()
    made = [build(node, f"logger.{name}")(save_dir=str(run_dir)) for name, node in nodes if node]
    loggers = [logger for logger in made if logger is not None]  # a factory may decline (wandb.mode=disabled)
    for wandb_logger in _wandb_loggers(loggers):  # the mode it runs in, not the null that means "the default"
        config["wandb.mode"] = "offline" if wandb_logger.experiment.offline else "online"  # W&B says "dryrun"
    for logger in loggers:
        logger.log_hyperparams(config)
    return loggers


def discard_if_unused(run_dir: Path) -> None:
    """Remove a run folder that holds nothing but what Hydra wrote before the run started (.hydra/, its log)."""
    try:
        if (
            run_dir.is_dir()
            and not holds_run(run_dir)
            and all(p.name == ".hydra" or p.suffix == ".log" for p in run_dir.iterdir())
        ):
            shutil.rmtree(run_dir)
            if not any(run_dir.parent.iterdir()):  # the day's folder, when this was its only run
                run_dir.parent.rmdir()
    except OSError:  # a folder we cannot tidy is left as it is
        pass


def _wandb_loggers(loggers: list) -> list:
    return [lg for lg in loggers if isinstance(lg, WandbLogger)]


def _close_wandb(loggers: list, exit_code: int) -> None:
    # Always close the W&B run: Lightning's WandbLogger would otherwise adopt the dangling run
    # (wandb.run) in the next train() of this process, e.g. the next sweep trial.
    for wandb_logger in _wandb_loggers(loggers):
        if wandb_logger._experiment is None:
            continue
        try:
            wandb_logger.experiment.finish(exit_code=exit_code)
        except Exception as e:  # noqa: BLE001 - the run's own files are written: W&B's trouble is a warning
            _wandb_trouble("closing the run failed", e, "metrics.json and the CSV log are complete")


def _wandb_trouble(what: str, e: Exception, complete: str) -> None:
    log.warning("W&B: %s (%s); %s", what, described(e, 300), complete)


def checkpoint_callbacks(folder: str, monitor: str | None, every: int = 0) -> list[ModelCheckpoint]:
    """The run's checkpoints in ``folder``: the first keeps ``best-<epoch>.ckpt`` by ``monitor`` (without one,
    ``epoch-<epoch>.ckpt``, the latest), the one the test measures; ``last.ckpt`` is rewritten after every epoch
    and, with ``every`` > 0, every ``every`` training steps too, so that a killed run resumes mid-epoch."""
    best = ModelCheckpoint(
        dirpath=folder,
        filename="best-{epoch:02d}" if monitor else "epoch-{epoch:02d}",
        monitor=monitor,
        mode="min" if monitor and sense(monitor) == "minimize" else "max",
        save_last=monitor is None,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    callbacks = [best]
    if monitor:
        # Lightning 2.6 writes save_last's last.ckpt only at a step where a best checkpoint is saved: it froze at the
        # best epoch, and resume=last lost every epoch after it. Unmonitored, this one saves after every epoch.
        callbacks.append(ModelCheckpoint(dirpath=folder, filename="last", enable_version_counter=False))
    if every:
        callbacks.append(
            ModelCheckpoint(
                dirpath=folder, save_top_k=0, save_last=True, every_n_train_steps=every, enable_version_counter=False
            )
        )
    return callbacks


def _fit_and_test(resolved, module, datamodule, run_dir, ckpt_path, loggers, speed, extra_callbacks):
    settings = resolved.get("checkpoint") or {}
    folder = str(run_dir / "checkpoints")
    # No validation (a refit on every training image): nothing to select on, the last epoch is the model.
    monitor = None if no_validation(resolved) else settings.get("monitor") or "val/acc"
    if monitor is None:
        log.info("no validation split: checkpointing the last epoch (checkpoints/epoch-NN.ckpt), which the test uses")
    callbacks = checkpoint_callbacks(folder, monitor, int(settings.get("every_n_train_steps") or 0))
    checkpoint = callbacks[0]
    if settings.get("every_epoch"):  # for curves of accuracy against time, afterwards
        callbacks.append(EpochCheckpoints(str(run_dir / "checkpoints" / "epochs")))
    stop = StopOnSignal(run_dir / "checkpoints" / "last.ckpt")
    estimate = RunTimeEstimate(experiment=identity_of(resolved)["experiment"])
    callbacks += [estimate, stop] + [build(c, "callbacks") for c in (resolved.get("callbacks") or {}).values() if c]
    if not loggers:  # LearningRateMonitor refuses a trainer without a logger: nothing to log the rates to
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    callbacks += extra_callbacks or []
    callbacks.append(speed)  # the speed: section (stnlab.training.speed)
    trainer: pl.Trainer = build(
        resolved["trainer"],
        "trainer",
        logger=loggers,
        callbacks=callbacks,
        default_root_dir=str(run_dir),
        plugins=[AtomicCheckpointIO()],
        **({"limit_val_batches": 0} if monitor is None else {}),  # no empty validation loop
    )

    fit_seconds = _fit(trainer, module, datamodule, ckpt_path, stop, run_dir)

    metrics: dict[str, Any] = {}
    # After trainer.strategy=ddp_spawn the fit ran in worker processes: only callback_metrics came back.
    done = trainer.callback_metrics
    for key, best in (("val/acc_best", module.val_acc_best), ("val/acc_weighted_best", module.val_acc_weighted_best)):
        if best.update_called:
            metrics[key] = float(best.compute())
        elif key in done:
            metrics[key] = float(done[key])
    for key in ("val/acc", "val/acc_weighted"):  # the last validation's: what a refit of this recipe would keep
        if key in done:
            metrics[key] = float(done[key])
    if datamodule.train is None:  # fitted in spawned workers: load here to learn whether test labels exist
        datamodule.setup("test")
    if datamodule.has_test and resolved.get("test", True):
        ckpt = checkpoint.best_model_path or None  # this callback's best (Lightning's "best" warns with two callbacks)
        # A checkpoint's state_dict holds the averaged weights (callbacks=[default,ema]), the ones validated and chosen;
        # WeightAveraging.on_load_checkpoint would put the raw weights of that epoch back before the test.
        trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, WeightAveraging)]
        results = _test(trainer, module, datamodule, ckpt, run_dir)
        metrics.update({k: float(v) for k, v in results[0].items()} if results else {})
        if "data/test_images" in metrics:
            metrics["data/test_images"] = round(metrics["data/test_images"])
    metrics["time/fit_s"] = fit_seconds
    for key, split in (("data/train_images", datamodule.train), ("data/val_images", datamodule.val)):
        if split is not None:
            metrics[key] = len(split)
    metrics["model/params"] = sum(p.numel() for p in module.net.parameters())
    for key in ("perf/train_img_per_cpu_s", "perf/train_img_per_s"):  # the last epoch's (callbacks.throughput)
        if key in done:
            metrics[key] = float(done[key])
    if checkpoint.best_model_path:
        metrics["best_checkpoint"] = checkpoint.best_model_path
    if trainer.is_global_zero:
        # First (W&B is a copy of it), and whole: compare.py never reads half a metrics.json.
        write_text_whole(run_dir / "metrics.json", json.dumps(metrics, indent=2))
        gtsrb = identity_of(resolved)["data"] == "gtsrb"  # the committee's 99.46% is a GTSRB figure
        for wandb_logger in _wandb_loggers(loggers):
            try:
                write_summary(wandb_logger, {k: v for k, v in metrics.items() if k != "best_checkpoint"}, gtsrb)
            except Exception as e:  # noqa: BLE001 - as for _close_wandb
                _wandb_trouble("the summary was not written", e, "metrics.json is complete")
        print(summary_line(run_dir, metrics, gtsrb, datamodule.has_test, resolved.get("test", True)), flush=True)
    return metrics


def _fit(trainer, module, datamodule, ckpt_path: Path | None, stop: StopOnSignal, run_dir: Path) -> float:
    """``trainer.fit`` (resuming ``ckpt_path``); the seconds it took. SIGTERM or Ctrl-C is :class:`RunInterrupted`,
    after ``last.ckpt`` was written."""
    start = time.perf_counter()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None, weights_only=True)
    except SIGTERMException:
        raise stop.interrupted(trainer, run_dir) from None
    except ValueError as e:
        batches = re.search(r"val_check_interval.*training batches \((\d+)\)", str(e))
        if batches is None:
            raise
        raise ConfigError(
            f"trainer.val_check_interval={trainer.val_check_interval} is beyond the epoch's {batches.group(1)} "
            f"training batches; pass at most {batches.group(1)}, a fraction <= 1.0, or "
            "trainer.check_val_every_n_epoch=null to count batches across epochs"
        ) from None
    if "train/loss_step" not in trainer.callback_metrics:  # logged by every training step, in any process
        raise ConfigError(
            f"the fit trained no step (it stopped at epoch {trainer.current_epoch}, step {trainer.global_step}): "
            "the test would measure untrained weights; check trainer.max_time, max_epochs and max_steps"
        )
    return time.perf_counter() - start


def _test(trainer, module, datamodule, ckpt: str | None, run_dir: Path) -> list[dict]:
    """``trainer.test`` of the checkpoint ``ckpt`` (None: the weights as they are)."""
    try:
        return trainer.test(module, datamodule=datamodule, ckpt_path=ckpt, verbose=False, weights_only=True)
    except SIGTERMException:
        raise RunInterrupted(
            "SIGTERM stopped the test stage; the fit is complete: test its checkpoint with src/evaluate.py "
            f"ckpt={ckpt or run_dir / 'checkpoints' / 'last.ckpt'}",
            signal.SIGTERM,
        ) from None


def summary_line(run_dir: Path, metrics: dict[str, Any], gtsrb: bool, has_test: bool, test: bool = True) -> str:
    """The run in one line: folder, val/acc_best, test/acc, the delta to the committee (or why absent), time."""
    parts = [f"stnlab: run {run_dir}"]
    if metrics.get("val/acc_best") is not None:
        parts.append(f"val/acc_best {100 * metrics['val/acc_best']:.2f}%")
    else:
        parts.append("val/acc_best - (no validation)")
    if metrics.get("test/acc") is not None:
        parts.append(f"test/acc {100 * metrics['test/acc']:.2f}%")
    else:
        why = "no test labels" if not has_test else "test=false" if not test else "the test stage did not run"
        parts.append(f"test/acc - ({why})")
    parts.append(_delta_part(metrics, gtsrb))
    parts.append(f"fit {metrics['time/fit_s'] / 60:.1f} min")
    return " | ".join(parts)


def _delta_part(metrics: dict[str, Any], gtsrb: bool) -> str:
    if not gtsrb:
        return f"no Δ vs {IDSIA_COMMITTEE_ACC} (not GTSRB)"
    delta, on = committee_delta(metrics)
    if delta is None:
        return f"no Δ vs {IDSIA_COMMITTEE_ACC} ({on})"
    return f"Δ vs {IDSIA_COMMITTEE_ACC} {delta:+.2f} pts ({'test' if on == 'test' else 'val: no test result'})"
