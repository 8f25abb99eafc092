"""Upload the offline W&B runs: ``python src/sync.py [dry_run=true] ['kinds=[train,eval]'] [include_failed=true]``."""

import sys
from pathlib import Path

from omegaconf import DictConfig

from stnlab.tracking.sync import describe, find_offline_runs, select, sync


def sync_all(cfg: DictConfig) -> None:
    """``src/sync.py``'s job: the upload's failure is the command's exit status."""
    runs = find_offline_runs(Path(cfg.outputs))
    chosen = select(
        runs, list(cfg.kinds or []), bool(cfg.include_failed), bool(cfg.include_debug), bool(cfg.include_synced)
    )
    print(describe(runs, chosen, list(cfg.kinds or [])) if runs else f"no offline W&B runs under {cfg.outputs}")
    print(
        f"{len(chosen)} of {len(runs)} offline run(s) to upload"
        + (" (dry run: nothing uploaded)" if cfg.dry_run else "")
    )
    if not cfg.dry_run and chosen:
        code = sync([r.path for r in chosen], cfg.project, cfg.entity)
        if code:
            sys.exit(code)
