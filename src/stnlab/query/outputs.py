"""Writing a result folder all at once: files are made in a hidden staging folder inside it and moved into
place (``os.replace``, atomic per file) only when every one is complete, so a failure leaves nothing new."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from stnlab.errors import StnlabError


class OutputError(StnlabError):
    """The output folder cannot be written."""


class Staging:
    """``with Staging(out) as stage: stage.path("a.csv") ...; stage.commit()``; leaving the block without
    ``commit`` (an error) removes everything staged."""

    def __init__(self, out: Path | str):
        self.out = Path(out)
        self.dir: Path | None = None
        self.files: list[str] = []
        self.committed = False
        self.made_out = False

    def __enter__(self) -> Staging:
        try:
            self.made_out = not self.out.exists()
            self.out.mkdir(parents=True, exist_ok=True)
            self.dir = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.out))
        except OSError as e:
            raise OutputError(
                f"cannot write to out={self.out} ({e.strerror or e}); pass out= a writable folder"
            ) from None
        return self

    def __exit__(self, *exc) -> None:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
        if self.made_out and not self.committed:
            shutil.rmtree(self.out, ignore_errors=True)  # made by us and holding nothing of value

    def path(self, name: str) -> Path:
        """Where to write the file that will become ``<out>/<name>``."""
        self.files.append(name)
        p = self.dir / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def commit(self) -> list[Path]:
        """Move every staged file into ``out``; returns the final paths."""
        done = []
        try:
            for name in self.files:
                final = self.out / name
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(self.dir / name, final)
                done.append(final)
        except OSError as e:
            raise OutputError(
                f"cannot write {self.out / name} ({e.strerror or e}); free space or pass another out="
            ) from None
        self.committed = True
        return done
