"""Resuming interrupted runs: the checkpoint that ``resume=last`` / ``resume=PATH`` names (found by
:func:`stnlab.run_dirs.resolve_resume`) checked against the run config before any work starts."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from stnlab.errors import ConfigError
from stnlab.run_dirs import run_dir_of_checkpoint
from stnlab.training.checkpoints import load_checkpoint_file, load_failure, upgrade_config

log = logging.getLogger(__name__)

# The config sections that define the network's parameters: they must match to load its weights.
NETWORK_KEYS = ("model", "transform", "normalize")
# What a resumed run continues from the checkpoint rather than taking from the command line: the optimizer and
# schedule states (the learning rate among them), the RNG and data order (seed), and the loss and jitter of the
# epochs already trained. Another value would be recorded in hparams.yaml but not (or only half) used.
TRAINING_KEYS = ("optim", "scheduler", "module", "augment", "seed")
# data.* keys that say where the data lies or how it is served, not what it is: they may differ on resume
# (another machine, another batch size for evaluation); every other data.* key must match.
DATA_LOCATION_KEYS = {
    "root",
    "mirror",
    "path",
    "batch_size",
    "eval_batch_size",
    "num_workers",
    "download_timeout",
    "download_retries",
}


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += _diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [f"{prefix.rstrip('.')}: {a!r} in the checkpoint, {b!r} now"]


def check_compatible(ckpt: Path, cfg: dict) -> None:
    """Raise ConfigError unless ``cfg`` continues the checkpoint's run: the same network (its weights must fit),
    data and training settings, and something left to train."""
    try:
        saved = load_checkpoint_file(ckpt, mmap=True)
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is the user's to replace
        raise ConfigError(
            f"resume: cannot read checkpoint {ckpt} ({load_failure(ckpt, e)}); resume from another "
            "checkpoint or drop resume= to start afresh"
        ) from None
    if not isinstance(saved, dict) or "state_dict" not in saved or "epoch" not in saved:
        raise ConfigError(
            f"resume: {ckpt} is not a training checkpoint (no state_dict/epoch; a file written by "
            "torch.save?); resume from <run_dir>/checkpoints/last.ckpt or drop resume= to start afresh"
        )
    old = ((saved.get("hyper_parameters") or {}).get("cfg")) or {}
    if old:  # else not one of ours: Lightning reports what does not fit
        check_same_run(ckpt, upgrade_config(old), cfg)
    check_unfinished(ckpt, saved, cfg.get("trainer") or {})


def check_same_run(ckpt: Path, old: dict, cfg: dict) -> None:
    """Raise ConfigError when ``cfg`` differs from the checkpoint's run config ``old`` where a resumed run
    cannot differ: the network, the data, the training settings the checkpoint carries on."""
    diffs = []
    for key in NETWORK_KEYS:
        diffs += _diff(old.get(key), cfg.get(key), f"{key}.")
    where = run_dir_of_checkpoint(ckpt) / ".hydra" / "overrides.yaml"
    if diffs:
        raise ConfigError(
            f"resume: {ckpt} was trained with another network ({_shown(diffs)}); resume with the run's "
            f"own overrides (see {where})"
        )
    # Other data would be trained on silently, and the run's val/acc_best (measured on the old data) kept.
    data_diffs = _diff(
        *({k: v for k, v in (d.get("data") or {}).items() if k not in DATA_LOCATION_KEYS} for d in (old, cfg)), "data."
    )
    if data_diffs:
        raise ConfigError(
            f"resume: {ckpt} was trained on other data ({_shown(data_diffs)}); its val/acc_best would "
            f"not be comparable: resume with the run's own data.* overrides (see {where}), or start "
            "a new run (drop resume=)"
        )
    training_diffs = _diff(*({k: d.get(k) for k in TRAINING_KEYS} for d in (old, cfg)))
    if training_diffs:
        raise ConfigError(
            f"resume: {ckpt} was trained with other settings ({_shown(training_diffs)}); a resumed run continues "
            f"with the checkpoint's optimizer, schedule and seed: resume with the run's own overrides (see {where}), "
            "or start a new run (drop resume=)"
        )


def check_unfinished(ckpt: Path, saved: dict, trainer: dict) -> None:
    """Raise ConfigError when the checkpoint has already trained as long as ``trainer`` allows: the resumed fit
    would train nothing (or Lightning refuse a checkpoint beyond ``max_epochs`` with a traceback)."""
    for key, done in (("max_epochs", saved.get("epoch")), ("max_steps", saved.get("global_step"))):
        limit = trainer.get(key)
        if limit is None or done is None or int(limit) == -1 or int(done) < int(limit):
            continue
        raise ConfigError(
            f"resume: {ckpt} has trained {int(done)} {key.removeprefix('max_')}, so trainer.{key}={limit} leaves "
            f"nothing to train; pass trainer.{key}={int(done) + 1} or more to train on, or test it with "
            f"src/evaluate.py ckpt={ckpt}"
        )


def _shown(diffs: list[str]) -> str:
    return "; ".join(diffs[:3]) + ("; ..." if len(diffs) > 3 else "")
