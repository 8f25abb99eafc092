"""Upload the offline W&B runs: ``python src/sync.py [dry_run=true] ['kinds=[train,eval]'] [include_failed=true]``."""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from stnlab.cli import hydra_entry, run_cli
from stnlab.config import CONF_DIR
from stnlab.tracking.sync import describe, find_offline_runs, select, sync


def sync_runs(cfg: DictConfig) -> int:
    runs = find_offline_runs(Path(cfg.outputs))
    chosen = select(
        runs, list(cfg.kinds or []), bool(cfg.include_failed), bool(cfg.include_debug), bool(cfg.include_synced)
    )
    print(describe(runs, chosen, list(cfg.kinds or [])) if runs else f"no offline W&B runs under {cfg.outputs}")
    print(
        f"{len(chosen)} of {len(runs)} offline run(s) to upload"
        + (" (dry run: nothing uploaded)" if cfg.dry_run else "")
    )
    if cfg.dry_run or not chosen:
        return 0
    return sync([r.path for r in chosen], cfg.project, cfg.entity)


@hydra.main(config_path=str(CONF_DIR), config_name="sync", version_base="1.3")
def _app(cfg: DictConfig) -> None:
    code = run_cli(sync_runs, cfg)
    if code:
        sys.exit(code)


def main() -> None:
    """``python src/sync.py``: the command line (``conf/sync.yaml``), its errors as one line."""
    hydra_entry(_app)
