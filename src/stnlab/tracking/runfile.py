"""Reading back what an offline W&B run recorded: the ``.wandb`` file that ``wandb sync`` uploads.

The file is W&B's LevelDB-style log: a 7-byte header (``:W&B``, magic 0xBEE1,
version 0), then 32 KiB blocks of chunks, each with a 7-byte header (CRC-32 of the type
byte then the data, little-endian length, type FULL=1/FIRST=2/MIDDLE=3/LAST=4); chunks
join into ``wandb_internal_pb2.Record`` protobuf messages.
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
HEADER = b":W&B"
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def iter_records(path: Path):
    """Yield every ``Record`` protobuf in a ``.wandb`` file, in order.

    Reading stops at the first chunk that is cut short or fails its CRC: W&B's service may be
    mid-write (a torn tail), and :func:`read_run` reads again until the exit record is there.
    """
    from wandb.proto import wandb_internal_pb2 as pb  # loads wandb (seconds): only a run file's reader needs it

    data = Path(path).read_bytes()
    if not data.startswith(HEADER):
        raise ValueError(f"{path}: not a W&B run file (no :W&B header)")
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        room = BLOCK - pos % BLOCK
        if room < 7:  # block trailer padding
            pos += room
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            pos += BLOCK - pos % BLOCK if pos % BLOCK else 0
            continue
        if len(chunk) < length or zlib.crc32(chunk, zlib.crc32(bytes([kind]))) != crc:
            return
        if kind in (FULL, FIRST):
            pending = chunk
        else:
            pending += chunk
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            yield record
            pending = b""


@dataclass
class RunFile:
    """History rows, summary, config and media file paths of one offline run."""

    path: Path
    run_id: str = ""
    name: str = ""
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    complete: bool = False  # the run's exit record was read: it finished and the file is fully written
    exit_code: int | None = None  # from the exit record: 0 finished, else failed (None: still going, or crashed)

    def metric(self, key: str) -> list[Any]:
        """The logged values of ``key``, in history order."""
        return [row[key] for row in self.history if key in row]

    def media(self, key: str) -> list[dict[str, Any]]:
        """The media logged under ``key`` (``wandb.Image``, ``wandb.Table``, ...): W&B's descriptors, each a dict
        with ``_type`` (``image-file``, ``table-file``, ...) and ``path`` (relative to the run's ``files/``)."""
        return [v for v in self.metric(key) if isinstance(v, dict) and "_type" in v]


def _key(item) -> str:
    return item.key if item.key else "/".join(item.nested_key)


def _put(target: dict, item) -> None:
    """Store ``item``'s value; a nested key nests, as W&B media are dicts (``["test/errors", "_type"]``)."""
    path = [item.key] if item.key else list(item.nested_key)
    for part in path[:-1]:
        target = target.setdefault(part, {})
    target[path[-1]] = json.loads(item.value_json)


def read_run(path: Path | str, wait_s: float = 10.0) -> RunFile:
    """Parse an offline run (its ``run-*.wandb`` file, or the ``offline-run-*`` folder holding it).

    W&B's service process writes the file and may still be flushing it when ``run.finish()``
    returns (the file can hold only its header then): until the exit record is there, the
    file is read again, for at most ``wait_s`` seconds (then what is there is returned,
    with ``complete`` false: a run still going, or one that crashed).
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("run-*.wandb"))
        if len(files) != 1:
            names = ", ".join(f.name for f in files) or "none"
            raise ValueError(f"{path} holds {len(files)} run-*.wandb files ({names}), where a run has one")
        (path,) = files
    deadline = time.monotonic() + wait_s
    while True:
        out = _parse(path)
        if out.complete or time.monotonic() >= deadline:
            return out
        time.sleep(0.1)


def _parse(path: Path) -> RunFile:
    out = RunFile(path=path)
    for rec in iter_records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            out.run_id, out.name, out.group, out.job_type = r.run_id, r.display_name, r.run_group, r.job_type
            out.tags = list(r.tags)
        if kind in ("run", "config"):  # a run record holds the config as first logged
            for item in (rec.run.config if kind == "run" else rec.config).update:
                out.config[_key(item)] = json.loads(item.value_json)
        if kind == "history":
            row: dict[str, Any] = {}
            for item in rec.history.item:
                _put(row, item)
            out.history.append(row)
        elif kind == "summary":
            for item in rec.summary.update:
                _put(out.summary, item)
            for item in rec.summary.remove:
                out.summary.pop(_key(item), None)
        elif kind == "files":
            out.files += [f.path for f in rec.files.files]
        elif kind == "exit":
            out.complete, out.exit_code = True, rec.exit.exit_code
    return out
