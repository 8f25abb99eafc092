"""W&B conventions: offline by default, run files inside the run directory, never blocking on the network.

Mode: ``wandb.mode`` in the config, else ``WANDB_MODE`` from the environment, else
``offline``. ``online`` is honoured only when an API key is known and the server
answers within a few seconds; otherwise the run falls back to offline with one
warning (``wandb sync`` uploads it later).
"""

from __future__ import annotations

import http.client
import logging
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from stnlab import IDSIA_COMMITTEE_ACC, committee_delta
from stnlab.errors import first_line
from stnlab.tracking.run_identity import run_name, run_tags

log = logging.getLogger(__name__)

# Per-epoch curves whose summary is their best epoch (val/acc_best is already a running maximum).
SUMMARY_MAX = ("val/acc", "val/acc_weighted")


def _has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text() or bool(os.environ.get("WANDB_BASE_URL"))
    except OSError:
        return False


def _reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether an HTTP server answers at ``url`` within ``timeout`` (any status counts). A refused port, a
    black hole and a server that accepts connections but never answers are all unreachable: W&B itself
    would wait on those for minutes."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/healthz", timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException):  # timeouts are OSErrors
        return False


def resolve_mode(requested: str | None) -> str:
    mode = (requested or os.environ.get("WANDB_MODE") or "offline").lower()
    if mode in ("online", "run"):
        base = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
        if not _has_credentials():
            log.warning(
                "W&B online mode but no API key (wandb login / WANDB_API_KEY): logging offline; `wandb sync` later"
            )
            return "offline"
        if not _reachable(base):
            log.warning("W&B server %s unreachable: logging offline; `wandb sync` the run later", base)
            return "offline"
        return "online"
    return mode if mode in ("offline", "disabled", "dryrun") else "offline"


def init_kwargs(wb: dict, out_dir: Path, mode: str, **run: Any) -> dict[str, Any]:
    """``wandb.init`` arguments of every stnlab run (training, evaluation, robustness, sweep report): ``run``'s
    (name, job_type, group, tags, config), the project of the ``wandb`` config section ``wb``, run files under
    ``out_dir``, no system stats, a bounded wait for the service."""
    import wandb  # heavy to import (seconds): only the code that logs to W&B loads it

    os.environ["WANDB_MODE"] = mode  # the wandb service reads it too
    os.environ.setdefault("WANDB_SILENT", "true")
    out_dir.mkdir(parents=True, exist_ok=True)
    return dict(
        project=wb.get("project") or "stnlab",
        entity=wb.get("entity"),
        dir=str(out_dir),
        mode=mode,
        settings=wandb.Settings(init_timeout=60, x_disable_stats=True, silent=True, mode=mode),
        **run,
    )


def open_run(
    wb: dict,
    out_dir: Path,
    name: str,
    job_type: str,
    config: dict[str, Any],
    mode: str | None = None,
    group: str | None = None,
    tags: list[str] | None = None,
    run_id: str | None = None,
):
    """A W&B run outside training (its own ``finish()`` is the caller's), or None when W&B is disabled.
    Offline unless ``mode`` / ``wb["mode"]`` / ``WANDB_MODE`` asks otherwise and the server answers.
    With ``run_id``, the run with that id is continued (online) or replaced (offline: the earlier offline
    copy under ``out_dir`` is removed), so that rewriting a report keeps one run."""
    import wandb  # heavy to import (seconds): only the code that logs to W&B loads it

    mode = resolve_mode(mode or wb.get("mode"))
    if mode == "disabled":
        return None
    if "wandb.mode" in config:  # the logged run config says the mode this run logs in, not a null
        config = {**config, "wandb.mode": "offline" if mode in ("offline", "dryrun") else mode}
    extra: dict[str, Any] = {}
    if run_id:
        extra = {"id": run_id, "resume": "allow"}
        if mode != "online":
            for old in (out_dir / "wandb").glob(f"offline-run-*-{run_id}"):
                shutil.rmtree(old, ignore_errors=True)
    kw = init_kwargs(wb, out_dir, mode, name=name, job_type=job_type, config=config, group=group, tags=tags or [])
    return wandb.init(**kw, reinit="finish_previous", **extra)


def make_wandb_logger(save_dir: str | Path, settings: dict | None = None, identity: dict | None = None):
    """Lightning's WandbLogger of a training run (``conf/logger/wandb.yaml``), opened with :func:`init_kwargs`:
    named and tagged from ``identity``, set up by the ``wandb`` config section ``settings``. None on DDP
    workers (rank 0 logs the run) and when W&B is disabled. The config arrives through ``log_hyperparams``."""
    # This module is on the apps' --help path, which loads no Lightning.
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank != 0:  # a DDP worker started by Lightning, torchrun or SLURM: rank 0 logs the run
        return None
    wb = dict(settings or {})
    mode = resolve_mode(wb.get("mode"))
    if mode == "disabled":
        return None
    from lightning.pytorch.loggers import WandbLogger  # (Lightning: as above)

    cfg = {"identity": identity or {}, "wandb": wb}
    kw = init_kwargs(
        wb,
        Path(save_dir),
        mode,
        name=wb.get("name") or run_name(cfg),
        job_type=wb.get("job_type") or "train",
        group=wb.get("group"),
        tags=run_tags(cfg),
    )
    kw.pop("mode")
    logger = WandbLogger(save_dir=kw.pop("dir"), offline=mode != "online", **kw)
    # Lightning passes anonymous=None, which W&B 0.31 warns has no effect; W&B's default is to leave it out.
    logger._wandb_init.pop("anonymous", None)
    try:
        run = logger.experiment
    except Exception as e:  # noqa: BLE001 - a rejected key or a failing server must not stop the run
        if mode != "online":
            raise
        log.warning(
            "W&B online start failed (%s): logging offline; `wandb sync` the run later",
            first_line(e, 200),
        )
        return make_wandb_logger(save_dir, {**wb, "mode": "offline"}, identity)
    for key in SUMMARY_MAX:
        run.define_metric(key, summary="max")
    if (identity or {}).get("data", "gtsrb") == "gtsrb":
        run.summary["baseline/idsia_committee_acc"] = IDSIA_COMMITTEE_ACC / 100
    return logger


def write_summary(logger, metrics: dict[str, float], baseline: bool = True) -> None:
    """Final numbers into the run summary, with (``baseline``: GTSRB runs only) the delta to the 99.46%
    committee in points."""
    summary = logger.experiment.summary
    for k, v in metrics.items():
        # The history's maximum stays the summary of a key defined so (SUMMARY_MAX); the last value goes beside it.
        summary[f"{k}_last" if k in SUMMARY_MAX else k] = v
    delta, on = committee_delta(metrics)
    if delta is not None and baseline:
        summary["baseline/delta_vs_idsia"] = delta
        summary["baseline/delta_measured_on"] = on
