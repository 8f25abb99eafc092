"""Which offline W&B runs to upload, and uploading them with ``wandb sync``.

Every stnlab run keeps its W&B files beside its other results: training runs in
``<run dir>/wandb/`` (``outputs/runs``, ``outputs/multirun``, sweep trials under
``outputs/sweeps/<study>/trial_*``), evaluations in ``<run dir>/eval/wandb/``, robustness
tables and sweep reports in their own folders. Each offline run is read with the project's
own reader (:mod:`stnlab.tracking.runfile`) and kept unless it failed or was a debug run.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from stnlab.errors import ConfigError, described
from stnlab.tracking.runfile import read_run

log = logging.getLogger(__name__)
KINDS = ("train", "multirun", "trial", "eval", "robustness", "report")


@dataclass
class OfflineRun:
    path: Path  # the offline-run-* folder
    kind: str
    name: str
    status: str  # finished | failed | unfinished | pruned | unreadable
    debug: bool
    synced: bool
    problem: str = ""  # why an unreadable run could not be read


def _kind(path: Path, job_type: str) -> str:
    if job_type in ("eval", "robustness", "report"):
        return job_type
    parts = path.parts
    if "sweeps" in parts:
        return "trial"
    return "multirun" if "multirun" in parts else "train"


def find_offline_runs(outputs: Path) -> list[OfflineRun]:
    """Every offline W&B run under ``outputs``, oldest first."""
    runs = []
    for folder in sorted(outputs.rglob("offline-run-*"), key=lambda p: p.name):
        if not folder.is_dir() or not any(folder.glob("run-*.wandb")):
            continue
        try:
            runs.append(_offline_run(folder))
        except Exception as e:  # noqa: BLE001 - a corrupt, cut or doubled file: that run is skipped, the others listed
            problem = described(e, 200)
            log.warning("sync: skipping %s: its W&B run file is unreadable (%s)", folder, problem)
            runs.append(OfflineRun(folder, _kind(folder, ""), "", "unreadable", False, False, problem))
    return runs


def _offline_run(folder: Path) -> OfflineRun:
    """The offline run in ``folder``, read from its ``.wandb`` file (raises what reading it raises)."""
    record = read_run(folder, wait_s=0)
    if record.exit_code is None:
        status = "unfinished"
    elif record.exit_code != 0:
        status = "failed"
    else:
        status = "pruned" if record.summary.get("sweep/state") == "pruned" else "finished"
    debug = (
        bool(record.config.get("identity.debug"))
        or record.config.get("trainer.fast_dev_run") is True
        or "debug" in record.tags
    )
    synced = any(folder.glob("*.wandb.synced"))
    return OfflineRun(folder, _kind(folder, record.job_type), record.name, status, debug, synced)


def select(
    runs: list[OfflineRun],
    kinds: list[str] | None = None,
    include_failed: bool = False,
    include_debug: bool = False,
    include_synced: bool = False,
) -> list[OfflineRun]:
    unknown = sorted(set(kinds or []) - set(KINDS))
    if unknown:
        raise ConfigError(f"kinds={unknown[0]} is not a kind of run; choose from {', '.join(KINDS)}")
    return [
        r
        for r in runs
        if (not kinds or r.kind in kinds)
        and r.status != "unreadable"  # wandb sync would fail on it, or upload garbage
        and (r.status in ("finished", "pruned") or include_failed)
        and (not r.debug or include_debug)
        and (include_synced or not r.synced)
    ]


def describe(runs: list[OfflineRun], chosen: list[OfflineRun], kinds: list[str] | None = None) -> str:
    lines = []
    for r in runs:
        mark, why = ("sync", "") if r in chosen else ("skip", f" ({_why_skipped(r, kinds)})")
        lines.append(f"{mark}  {r.kind:<10} {r.status:<10} {r.name or '-':<48} {r.path}{why}")
    return "\n".join(lines)


def _why_skipped(run: OfflineRun, kinds: list[str] | None) -> str:
    if kinds and run.kind not in kinds:
        return "not among kinds="
    if run.problem:
        return f"unreadable: {run.problem}"
    if run.synced:
        return "already synced"
    return "debug" if run.debug else run.status


def sync(paths: list[Path], project: str | None = None, entity: str | None = None) -> int:
    """``wandb sync`` of ``paths``; its exit status."""
    exe = shutil.which("wandb") or str(Path(sys.executable).with_name("wandb"))
    cmd = [exe, "sync"] + ([f"--project={project}"] if project else []) + ([f"--entity={entity}"] if entity else [])
    return subprocess.run(cmd + [str(p) for p in paths], check=False).returncode
