"""Files written whole and files shared by processes and users: ``.part`` files, locks, permissions.

Every file that a reader must never see half-written (archives, caches, checkpoints, metrics.json, reports,
exports) is written to a ``.part`` file beside its final name and renamed into place (:func:`written_whole`).
A shared ``data.root`` (and any output read by other users) needs the mode any new file gets (0666 less the
umask, usually 0644), so the part is made as ``open()`` makes files.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import filelock


@contextlib.contextmanager
def written_whole(final: Path | str) -> Iterator[Path]:
    """A new empty ``.<name>.<random>.part`` file beside ``final`` (its folder made again if need be) for the block
    to write. When the block ends without an error, the part is renamed onto ``final``, which so holds the whole new
    file or its old one, never half of it; otherwise it is removed."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    part = final.parent / f".{final.name}.{secrets.token_hex(8)}.part"
    part.touch(exist_ok=False)  # made by open(): the mode any new file gets, unlike mkstemp's 0600
    try:
        yield part
        os.replace(part, final)
    finally:
        part.unlink(missing_ok=True)


def write_text_whole(final: Path | str, text: str) -> None:
    """``text`` into ``final`` through :func:`written_whole`."""
    with written_whole(final) as part:
        part.write_text(text)


def clear_parts(final: Path) -> None:
    """Remove the ``.part`` files a killed writer of ``final`` left (call only while holding its lock)."""
    for stale in final.parent.glob(f".{final.name}.*.part"):
        stale.unlink(missing_ok=True)


@contextlib.contextmanager
def locked(path: Path):
    """An exclusive inter-process lock (``filelock``'s ``flock``) on the file ``path`` (made if needed, mode 0666
    less the umask, kept afterwards) or on the folder ``path`` (which leaves nothing behind); the kernel releases it
    if the holder dies."""
    if not path.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        with filelock.FileLock(path):
            yield
        return
    fd = os.open(path, os.O_RDONLY)  # a folder: its own descriptor, as FileLock opens files only
    try:
        filelock.lock_descriptor(fd)  # flock, as run_dirs' run-folder lock
        yield
    finally:
        os.close(fd)  # closing releases the lock
