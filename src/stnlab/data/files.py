"""Files under ``data.root`` shared by processes and users: locks, temporary parts, permissions.

Archives and caches are written to a ``.part`` file beside their final name and renamed
into place. ``mkstemp`` makes that file mode 0600; a shared ``data.root`` needs the mode
any new file gets (0666 less the umask, usually 0644), so it is set before the rename.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from pathlib import Path


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


def clear_parts(final: Path) -> None:
    """Remove the ``.part`` files a killed writer of ``final`` left (call only while holding its lock)."""
    for stale in final.parent.glob(f".{final.name}.*.part"):
        stale.unlink(missing_ok=True)


@contextlib.contextmanager
def locked(path: Path):
    """An exclusive inter-process lock on the file ``path`` (made if needed) or on the folder ``path``
    (which leaves nothing behind); the kernel releases it if the holder dies."""
    if path.is_dir():
        fd = os.open(path, os.O_RDONLY)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
