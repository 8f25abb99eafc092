"""Checkpoints that are whole or absent: a full disk (or quota) mid-write must not leave a truncated ``last.ckpt``.

Lightning's ``TorchCheckpointIO`` serialises to memory, then writes the file in place: a write that fails
half-way leaves a truncated checkpoint under the final name, which ``resume=last`` would then pick. Here
the bytes go to a ``.<name>.*.part`` file beside it and are renamed over the final name only once complete, so the
previous checkpoint survives a failed write; the failure itself is one line naming the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from stnlab.errors import StnlabError, first_line
from stnlab.files import written_whole

# errno values that mean "no room to write": a full disk, a file-size limit, a quota.
NO_ROOM = {28, 27, 122}  # ENOSPC, EFBIG, EDQUOT


class RunWriteError(StnlabError):
    """A run's file could not be written (a full disk under run_dir, a quota): the run stops with one line."""


def no_room(run_dir: Path | str, path: Path | str, reason: str) -> RunWriteError:
    return RunWriteError(
        f"cannot write {path} ({reason}); free space under {run_dir} (the last complete "
        f"checkpoint is kept), then continue with resume=last run_dir={run_dir}"
    )


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if "://" in str(path):  # a remote store (fsspec): its own semantics
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        try:
            with written_whole(path) as part:
                super().save_checkpoint(checkpoint, part, storage_options)
        except (OSError, RuntimeError) as e:  # torch reports some write failures as RuntimeError
            reason = getattr(e, "strerror", None) or first_line(e, 200)
            raise no_room(path.parent.parent, path, reason) from None
