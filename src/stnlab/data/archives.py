"""Fetching the official GTSRB archives: official server or a mirror (folder or URL).

An archive only ever appears under its final name after it was fully fetched and
verified: bytes go to a temporary file beside it, are checked (official MD5 when
fetched from the official server, zip integrity and expected layout otherwise),
then atomically renamed. The archives are read in place (never extracted), so an
interrupted run can leave nothing half-made that a later run would trust.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import shutil
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from stnlab.errors import DataError
from stnlab.files import clear_parts, locked, written_whole

log = logging.getLogger(__name__)

OFFICIAL_URL = "https://sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370/"


@dataclass(frozen=True)
class Archive:
    filename: str
    md5: str
    # A member path that proves the layout is the official one.
    marker: str


TRAIN = Archive(
    "GTSRB_Final_Training_Images.zip",
    "f33fd80ac59bff73c82d25ab499e03a3",
    "GTSRB/Final_Training/Images/00000/GT-00000.csv",
)
TEST = Archive(
    "GTSRB_Final_Test_Images.zip", "c7e4e6327067d32654124b0fe9e82185", "GTSRB/Final_Test/Images/GT-final_test.test.csv"
)
TEST_GT = Archive("GTSRB_Final_Test_GT.zip", "fe31e9c9270bbcd7b84b7f21a9d9d9e5", "GT-final_test.csv")

MIRROR_HINT = "set data.mirror=DIR_OR_URL or the GTSRB_MIRROR environment variable to a folder or URL holding the official archives"


def verify_archive(path: Path, archive: Archive, md5: bool = False, source: str | None = None) -> None:
    """Raise DataError unless ``path`` is a readable zip in the official layout (and MD5, if asked).

    ``source`` is where the bytes came from (a mirror file or URL), named in the error instead of ``path``.
    """
    label = source or path
    if md5:
        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "md5").hexdigest()
        if digest != archive.md5:
            raise DataError(f"{archive.filename}: MD5 {digest} != official {archive.md5}; delete it and fetch again")
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if archive.marker not in names:
                raise DataError(
                    f"{label}: not the official GTSRB layout (no member {archive.marker}); point data.mirror at the official archives"
                )
            bad = zf.testzip()
            if bad is not None:
                raise DataError(f"{label}: corrupt member {bad}; replace the archive with a good copy")
    except zipfile.BadZipFile as e:
        raise DataError(f"{label}: truncated or corrupt zip ({e}); replace the archive with a good copy") from None
    except (OSError, EOFError, zipfile.LargeZipFile, zlib.error) as e:  # zlib.error: a corrupt deflate stream
        raise DataError(f"{label}: unreadable zip ({e}); replace the archive with a good copy") from None


def _download(url: str, dest: Path, timeout: float, retries: int) -> None:
    """Stream ``url`` into ``dest`` with a progress bar, retrying transient failures."""
    last: Exception | None = None
    for attempt in range(1, retries + 1):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(dest, "wb") as out:
                total = int(resp.headers.get("Content-Length") or 0) or None
                with tqdm.wrapattr(out, "write", total=total, desc=Path(url).name, leave=False) as counted:
                    shutil.copyfileobj(resp, counted, 1 << 20)
                if total is not None and out.tell() != total:
                    raise OSError(f"got {out.tell()} of {total} bytes")
            return
        except urllib.error.HTTPError as e:
            if e.code == 404:
                raise DataError(f"{url}: not found (HTTP 404); {MIRROR_HINT}") from None
            last = e
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            last = e
        if attempt < retries:
            time.sleep(min(2.0 * attempt, 5.0))
    reason = getattr(last, "reason", last)
    raise DataError(f"cannot download {url} after {retries} tries ({reason}); {MIRROR_HINT}")


def fetch(archive: Archive, root: Path, mirror: str | None = None, timeout: float = 30.0, retries: int = 3) -> Path:
    """Return the path of a verified copy of ``archive`` under ``root``, fetching it if needed.

    ``mirror`` is a folder or an http(s)/file URL holding the archive under its
    official name; ``None`` means the official server (verified by MD5).
    """
    final = root / archive.filename
    if final.exists():  # no lock needed to read: a final name only ever holds a complete archive
        verify_archive(final, archive)
        return final
    with contextlib.ExitStack() as stack:
        try:
            root.mkdir(parents=True, exist_ok=True)
            stack.enter_context(locked(root))  # the folder itself: one fetch at a time, and no lock file left behind
        except OSError as e:
            raise DataError(
                f"cannot write {archive.filename} into data.root={root} ({e.strerror or e}); "
                "set data.root to a writable folder (or put the archive there)"
            ) from None
        if final.exists():  # another process fetched it while we waited for the lock
            verify_archive(final, archive)
            return final
        clear_parts(final)  # a killed copy's leftovers: nobody else writes them while we hold the lock
        _fetch_into(archive, final, mirror, timeout, retries)
    return final


def _fetch_into(archive: Archive, final: Path, mirror: str | None, timeout: float, retries: int) -> None:
    try:
        with written_whole(final) as tmp:  # with a file's usual mode: mkstemp's 0600 would hide a shared data.root
            if mirror and not mirror.startswith(("http://", "https://", "file://")):
                src = Path(mirror).expanduser() / archive.filename
                if not src.is_file():
                    raise DataError(f"mirror folder {mirror} has no {archive.filename}; {MIRROR_HINT}")
                log.info("copying %s from mirror %s", archive.filename, mirror)
                try:
                    shutil.copyfile(src, tmp)
                except OSError as e:  # a full disk, a quota
                    raise DataError(
                        f"cannot copy {archive.filename} into {final.parent} ({e.strerror or e}); "
                        "free space there or set data.root to another folder"
                    ) from None
                verify_archive(tmp, archive, source=str(src))
            else:
                base = mirror if mirror else OFFICIAL_URL
                url = base.rstrip("/") + "/" + archive.filename
                log.info("downloading %s", url)
                _download(url, tmp, timeout=timeout, retries=retries)
                verify_archive(tmp, archive, md5=not mirror, source=url)
    except OSError as e:  # a read-only data.root
        raise DataError(
            f"cannot write {archive.filename} into data.root={final.parent} ({e.strerror or e}); "
            "set data.root to a writable folder (or put the archive there)"
        ) from None


def try_fetch(archive: Archive, **kw) -> Path | None:
    """Like :func:`fetch` but returns None when the archive is simply not available (optional archives)."""
    try:
        return fetch(archive, **kw)
    except DataError as e:
        if "not found" in str(e) or "has no" in str(e) or "cannot download" in str(e):
            log.debug("optional archive unavailable: %s", e)
            return None
        raise
