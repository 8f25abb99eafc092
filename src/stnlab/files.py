"""Files written whole and files shared by processes and users: ``.part`` files, locks, permissions.

Every file that a reader must never see half-written (archives, caches, checkpoints, metrics.json, reports,
exports) is written to a ``.part`` file beside its final name and renamed into place (:func:`written_whole`).
``mkstemp`` makes that file mode 0600; a shared ``data.root`` (and any output read by other users) needs the
mode any new file gets (0666 less the umask, usually 0644), so it is set before the rename.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import filelock


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it: set, then restore at once
    os.umask(mask)
    return mask


def normal_mode(path: Path | str) -> None:
    """Give ``path`` the permissions of a file made with ``open()``: 0666 less the process umask."""
    os.chmod(path, 0o666 & ~_umask())


def new_part(final: Path) -> Path:
    """An empty ``.<name>.<random>.part`` beside ``final``; its folder is made again if it went away."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def written_whole(final: Path | str) -> Iterator[Path]:
    """A new ``.part`` file beside ``final`` (its folder made again if need be) for the block to write. When the
    block ends without an error, the part gets the mode of a file made with ``open()`` and is renamed onto
    ``final``, which so holds the whole new file or its old one, never half of it; otherwise it is removed."""
    final = Path(final)
    part = new_part(final)
    try:
        yield part
        normal_mode(part)
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
