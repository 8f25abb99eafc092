"""Run folders: where a run writes, the run a checkpoint belongs to, and claiming a new one.

A run folder (``outputs/runs/<date>/<time>-<model>`` unless ``run_dir=``) holds ``.hydra/``,
``checkpoints/``, ``csv/``, ``wandb/``, ``eval/`` and ``metrics.json``. Checkpoints lie in
``<run_dir>/checkpoints/``. ``hydra.run.dir`` in ``conf/train.yaml`` resolves through
``stnlab.run_dir`` below: ``run_dir`` if set, else the resumed run's folder, else a new one.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from stnlab.errors import ConfigError

RUNS_ROOT = Path("outputs") / "runs"
MULTIRUN_ROOT = Path("outputs") / "multirun"
# What a folder holding a run has (Hydra's .hydra/ alone does not count: Hydra writes it before train()).
RUN_MARKERS = ("metrics.json", "checkpoints", "csv")


def run_dir_of_checkpoint(ckpt: Path | str) -> Path:
    """The run folder of ``<run_dir>/checkpoints/x.ckpt`` (or ``checkpoints/epochs/x.ckpt``); for a checkpoint
    kept elsewhere, its own folder."""
    path = Path(ckpt).expanduser()
    for folder in (path.parent, path.parent.parent):
        if folder.name == "checkpoints":
            return folder.parent
    return path.parent


def run_dir_of(cfg: Any) -> Path:
    """The folder of the run ``cfg`` (a composed train config) describes: ``run_dir``, else Hydra's output
    folder, else a new one claimed under ``outputs/runs``."""
    from hydra.core.hydra_config import HydraConfig

    if cfg.get("run_dir"):
        return Path(cfg.run_dir)
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(claim_run_dir(RUNS_ROOT / time.strftime("%Y-%m-%d_%H-%M-%S")))


def holds_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` already holds (part of) a training run: its checkpoints, CSV log or metrics."""
    return any((run_dir / marker).exists() for marker in RUN_MARKERS)


def check_run_dir_free(run_dir: Path) -> None:
    """Refuse to start a new run in a folder holding another: its checkpoints and metrics.json would be
    overwritten and its CSV log mixed with ours. Continuing it is ``resume=``."""
    if not holds_run(run_dir):
        return
    what = ""
    try:
        name = OmegaConf.select(OmegaConf.load(run_dir / ".hydra" / "config.yaml"), "model.name")
        what = f" (model {name})" if name else ""
    except Exception:  # noqa: BLE001 - the model's name only decorates the message
        pass
    raise ConfigError(
        f"run_dir={run_dir} already holds a run{what}; pick a new run_dir, or continue that run with "
        f"resume=last run_dir={run_dir}"
    )


_CLAIMED: dict[str, str] = {}


def claim_run_dir(default: str | Path) -> str:
    """A new, empty run folder: ``default``, else ``default-2``, ``-3``, ... Each is made with an exclusive
    mkdir, so runs started in the same second with the same model (a seed loop sent to the background)
    never share one. Claimed once per process: Hydra may resolve ``hydra.run.dir`` more than once."""
    key = str(default)
    if key not in _CLAIMED:
        base = Path(default)
        base.parent.mkdir(parents=True, exist_ok=True)
        for k in itertools.count(1):
            candidate = base if k == 1 else base.with_name(f"{base.name}-{k}")
            try:
                candidate.mkdir()
            except FileExistsError:
                continue
            _CLAIMED[key] = str(candidate)
            break
    return _CLAIMED[key]


def _run_dir_resolver(run_dir: Any, resume: Any, default: str) -> str:
    """``hydra.run.dir``: ``run_dir`` if set, else the resumed run's directory, else ``default``. Never raises:
    a bad ``resume`` is reported by ``train`` with the fix."""
    from stnlab.training.resume import resolve_resume

    if run_dir not in (None, ""):
        return str(run_dir)
    try:
        _, owner = resolve_resume(resume, verify=False)
    except Exception:  # noqa: BLE001 - reported later, one clear line
        owner = None
    return str(owner) if owner is not None else claim_run_dir(default)


def _output_subdir_resolver(resume: Any, stamp: str) -> str:
    """``hydra.output_subdir``: a resumed run keeps the run's own ``.hydra/`` (its original overrides) and
    records its own config in ``.hydra/resume-<stamp>/``."""
    return ".hydra" if resume in (None, "", "null", "None") else f".hydra/resume-{stamp}"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("stnlab.run_dir"):
        OmegaConf.register_new_resolver("stnlab.run_dir", _run_dir_resolver)
    if not OmegaConf.has_resolver("stnlab.output_subdir"):
        OmegaConf.register_new_resolver("stnlab.output_subdir", _output_subdir_resolver)
