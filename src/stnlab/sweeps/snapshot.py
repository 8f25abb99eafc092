"""The configs a study's trials are composed from: a copy of ``conf/`` taken when the study is created.

Editing ``conf/`` (or checking out another commit) under a running sweep then changes none of its trials:
every worker composes from the snapshot. The snapshot lives in the study's storage (a gzipped tar in the
study's system attributes, so workers on other machines get it too) and is unpacked, once per worker, to
``<out_dir>/<study>/conf/``. The spec that started the study is kept beside it: a worker that brings another
metric, direction, search space or fixed overrides is refused.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import optuna

from stnlab.config import CONF_DIR
from stnlab.errors import ConfigError
from stnlab.files import locked

CONF_KEY = "stnlab:conf_snapshot"
SPEC_KEY = "stnlab:spec"


def pack(conf_dir: Path = CONF_DIR) -> dict[str, str]:
    """``conf_dir``'s YAML files as ``{"sha": ..., "tar": base64 gzip tar}`` (sorted, no timestamps: the same
    files always give the same sha)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(conf_dir.rglob("*.yaml")):
            data = path.read_bytes()
            info = tarfile.TarInfo(str(path.relative_to(conf_dir)))
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    raw = buffer.getvalue()
    tar = base64.b64encode(gzip.compress(raw, compresslevel=9, mtime=0)).decode()
    return {"sha": hashlib.sha256(raw).hexdigest()[:16], "tar": tar}


def unpack(snapshot: dict[str, str], target: Path) -> Path:
    """The snapshot's files under ``target`` (written whole: a temp folder renamed into place).

    Workers of one machine unpack it at the same moment: under the lock on ``target``'s parent only the
    first writes it, and a folder in use (its marker names this snapshot) is never moved away; a folder
    with another marker is a deleted study's, and is replaced."""
    if _holds(target, snapshot):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with locked(target.parent):
        if _holds(target, snapshot):  # another worker unpacked it while we waited
            return target
        tmp = Path(tempfile.mkdtemp(prefix=".conf-", dir=target.parent))
        try:
            with tarfile.open(fileobj=io.BytesIO(base64.b64decode(snapshot["tar"])), mode="r:gz") as tar:
                tar.extractall(tmp, filter="data")
            (tmp / ".snapshot").write_text(snapshot["sha"] + "\n")
            if target.exists():
                old = target.with_name(f".{target.name}.old-{os.getpid()}")
                os.replace(target, old)
                shutil.rmtree(old, ignore_errors=True)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _holds(target: Path, snapshot: dict[str, str]) -> bool:
    marker = target / ".snapshot"
    return marker.is_file() and marker.read_text().strip() == snapshot["sha"]


def _attrs(study: optuna.Study) -> dict[str, Any]:
    storage = study._storage
    return storage.get_study_system_attrs(storage.get_study_id_from_name(study.study_name))


def _set(study: optuna.Study, key: str, value: Any) -> None:
    storage = study._storage
    storage.set_study_system_attr(storage.get_study_id_from_name(study.study_name), key, value)


def check_spec(study: optuna.Study, spec_fingerprint: dict[str, Any]) -> None:
    """A worker joining a study must bring the spec that started it (the first worker's, kept in the storage)."""
    kept = _attrs(study).get(SPEC_KEY)
    if kept is None:  # the study's first worker
        _set(study, SPEC_KEY, spec_fingerprint)
        return
    for key, value in json.loads(json.dumps(spec_fingerprint)).items():  # as the storage keeps it: lists, not tuples
        if kept.get(key) != value:
            raise ConfigError(
                f"study {study.study_name} was started with {key}={_short(kept.get(key))}, this worker brings "
                f"{key}={_short(value)}; run the study's own spec, or use another study=NAME"
            )


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 120 else text[:117] + "..."


def conf_dir(study: optuna.Study, study_dir: Path) -> Path:
    """Where this worker composes the study's trials from: its snapshot (taken by the study's first worker),
    unpacked under the study folder."""
    snapshot = _attrs(study).get(CONF_KEY)
    if snapshot is None:
        snapshot = pack()
        _set(study, CONF_KEY, snapshot)
    return unpack(snapshot, study_dir / "conf")
