"""Run folders: where a run writes, the run a checkpoint belongs to, and claiming one for this process.

A run folder (``<paths.runs_dir>/<date>/<time>-<model>`` unless ``run_dir=``; ``outputs/runs/...`` by default) holds ``.hydra/``,
``checkpoints/``, ``csv/``, ``wandb/``, ``eval/`` and ``metrics.json``. Checkpoints lie in
``<run_dir>/checkpoints/``. ``hydra.run.dir`` in ``conf/train.yaml`` resolves through
``stnlab.run_dir`` below: ``run_dir`` if set, else the resumed run's folder, else a new one.

A run folder belongs to one process: :func:`claim_run` holds an exclusive lock on the folder itself (``flock``
on its descriptor, through ``filelock``: nothing is written into it, and the kernel drops the lock when the
holder dies) for the run's life. The claim is made when Hydra resolves its output folder, before Hydra writes
``.hydra/`` there: a refused start sends Hydra's files to a scratch folder instead, and ``train`` reports the
refusal, so the folder it named is left exactly as it was.
"""

from __future__ import annotations

import itertools
import logging
import os
import tempfile
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any

import filelock
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from stnlab.errors import ConfigError, described

log = logging.getLogger(__name__)

# conf/paths/default.yaml's runs_dir: the default of the functions below for callers without a config.
RUNS_ROOT = Path("outputs") / "runs"
# What a folder holding a run has (Hydra's .hydra/ alone does not count: Hydra writes it before train()).
RUN_MARKERS = ("metrics.json", "checkpoints", "csv")
LAST = "last.ckpt"


def run_dir_of_checkpoint(ckpt: Path | str) -> Path:
    """The run folder of ``<run_dir>/checkpoints/x.ckpt`` (or ``checkpoints/epochs/x.ckpt``); for a checkpoint
    kept elsewhere, its own folder."""
    path = Path(ckpt).expanduser()
    for folder in (path.parent, path.parent.parent):
        if folder.name == "checkpoints":
            return folder.parent
    return path.parent


def _last_in(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / LAST


def find_last(run_dir: str | Path | None = None, runs_root: Path = RUNS_ROOT) -> Path:
    """``checkpoints/last.ckpt`` of ``run_dir``, else the most recently written one under ``runs_root``."""
    if run_dir:
        path = _last_in(Path(run_dir))
        if not path.is_file():
            raise ConfigError(
                f"resume=last: {path} does not exist; give resume=PATH/TO/checkpoint.ckpt, "
                "or drop resume= to start afresh"
            )
        return path
    candidates = [p for p in runs_root.glob(f"**/checkpoints/{LAST}") if p.is_file()]
    if not candidates:
        raise ConfigError(
            f"resume=last: no run under {runs_root} has checkpoints/{LAST}; "
            "give resume=PATH/TO/checkpoint.ckpt or run_dir=RUN_DIR"
        )
    return max(candidates, key=lambda p: p.stat().st_mtime)


def check_checkpoint(path: Path) -> None:
    """Raise ConfigError unless ``path`` is a complete checkpoint (torch's zip format, every CRC checked)."""
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
        bad = described(e)
    if bad is not None:
        raise ConfigError(
            f"resume: checkpoint {path} is truncated or corrupt ({bad}); resume from another "
            "checkpoint (its run's checkpoints/best-*.ckpt) or drop resume= to start afresh"
        )


def resolve_resume(
    resume: str | None, run_dir: str | Path | None = None, runs_root: Path = RUNS_ROOT, verify: bool = True
) -> tuple[Path | None, Path | None]:
    """``(checkpoint, its run folder)`` for a ``resume`` value; ``(None, None)`` when not resuming."""
    if not _is_set(resume):
        return None, None
    resume = str(resume).strip()
    if resume == "last":
        ckpt = find_last(run_dir, runs_root)
    else:
        ckpt = Path(resume).expanduser()
        if ckpt.is_dir():
            ckpt = _last_in(ckpt) if _last_in(ckpt).is_file() else ckpt / LAST
        if not ckpt.is_file():
            raise ConfigError(
                f"resume={resume}: no such checkpoint file; give a .ckpt file or a run directory "
                "holding checkpoints/last.ckpt, or resume=last"
            )
    if verify:
        check_checkpoint(ckpt)
    return ckpt, run_dir_of_checkpoint(ckpt) if ckpt.parent.name == "checkpoints" else None


def runs_dir_of(cfg: Any) -> Path:
    """``paths.runs_dir`` of a composed train config (a config composed before the paths group, from an older
    sweep's conf snapshot, has none: the group's default)."""
    return Path((cfg.get("paths") or {}).get("runs_dir") or RUNS_ROOT)


def run_dir_of(cfg: Any) -> Path:
    """The folder of the run ``cfg`` (a composed train config) describes: ``run_dir``, else Hydra's output
    folder, else a new one claimed under ``paths.runs_dir``."""
    if cfg.get("run_dir"):
        return Path(cfg.run_dir)
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(claim_run_dir(runs_dir_of(cfg) / time.strftime("%Y-%m-%d_%H-%M-%S")))


def holds_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` already holds (part of) a training run: its checkpoints, CSV log or metrics."""
    return any((run_dir / marker).exists() for marker in RUN_MARKERS)


def check_run_dir_free(run_dir: Path, resumed_from: Path | None = None) -> None:
    """Refuse to start a new run in a folder holding another: its checkpoints and metrics.json would be
    overwritten and its CSV log mixed with ours. Continuing it is ``resume=``; a checkpoint of another run
    (``resumed_from``) continues in its own folder or starts anew in an empty one."""
    if not holds_run(run_dir):
        return
    what = ""
    try:
        name = OmegaConf.select(OmegaConf.load(run_dir / ".hydra" / "config.yaml"), "model.name")
        what = f" (model {name})" if name else ""
    except Exception:  # noqa: BLE001 - the model's name only decorates the message
        pass
    if resumed_from is not None:
        raise ConfigError(
            f"run_dir={run_dir} already holds a run{what}, and the checkpoint to resume is {resumed_from}'s; "
            f"drop run_dir= to continue that run in its own folder, or pass run_dir= a new folder"
        )
    raise ConfigError(
        f"run_dir={run_dir} already holds a run{what}; pick a new run_dir, or continue that run with "
        f"resume=last run_dir={run_dir}"
    )


class RunDirBusy(ConfigError):
    """Another process holds the run folder: a run is training there."""


_HELD: dict[str, int] = {}  # run folder (absolute) -> the locked descriptor of this process


def _key(run_dir: Path) -> str:
    return os.path.abspath(run_dir)


def _make_folder(run_dir: Path) -> None:
    """Make ``run_dir`` (and its parents) unless it is there; a file in the way is one line."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file (or a link to one) by that name
        raise ConfigError(f"the run folder {run_dir} is a file; pass run_dir= a new folder") from None
    except OSError as e:  # a file among its parents, no permission, a full disk
        raise ConfigError(
            f"cannot make the run folder {run_dir} ({e.strerror or e}); pass run_dir= a folder you can write"
        ) from None


def _lock(run_dir: Path) -> int | None:
    """The folder's descriptor, locked; None when another process holds it."""
    fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if filelock.lock_descriptor(fd, blocking=False):
            return fd
    except OSError as e:  # a file system without flock (some network mounts): the run goes on unguarded
        log.warning("cannot lock the run folder %s (%s): nothing keeps another process out of it", run_dir, e)
        return fd
    os.close(fd)
    return None


def claim_run(run_dir: Path | str, resumed_from: Path | None = None) -> None:
    """Hold ``run_dir`` for this process until :func:`release_run` (or the process ends); a ConfigError, nothing
    written into the folder, when refused. ``resumed_from``: the run folder of the checkpoint being resumed (None:
    a new run); a run continues in its own folder, anywhere else it is a new run and needs a folder holding none."""
    run_dir = Path(run_dir)
    if _key(run_dir) in _HELD:
        return
    continuing = resumed_from is not None and same_folder(resumed_from, run_dir)
    if not continuing:
        check_run_dir_free(run_dir, resumed_from)  # before touching it
    _make_folder(run_dir)
    fd = _lock(run_dir)
    if fd is None:
        raise RunDirBusy(
            f"run_dir={run_dir} is in use: another process is training a run there; wait until it ends"
            + (", then resume it again" if continuing else ", or pick a new run_dir")
        )
    _HELD[_key(run_dir)] = fd
    if not continuing:
        try:
            check_run_dir_free(run_dir, resumed_from)  # again under the lock: a run may have ended there meanwhile
        except ConfigError:
            release_run(run_dir)
            raise


def release_run(run_dir: Path | str) -> None:
    """Let go of a folder claimed by :func:`claim_run` (nothing if this process does not hold it)."""
    fd = _HELD.pop(_key(Path(run_dir)), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor drops its lock


_CLAIMED: dict[str, str] = {}


def claim_run_dir(default: str | Path) -> str:
    """A new, empty run folder: ``default``, else ``default-2``, ``-3``, ... Each is made with an exclusive
    mkdir, so runs started in the same second with the same model (a seed loop sent to the background)
    never share one. Claimed once per process: Hydra may resolve ``hydra.run.dir`` more than once."""
    key = str(default)
    if key not in _CLAIMED:
        base = Path(default)
        _make_folder(base.parent)
        for k in itertools.count(1):
            candidate = base if k == 1 else base.with_name(f"{base.name}-{k}")
            try:
                candidate.mkdir()
            except FileExistsError:
                continue
            except OSError as e:
                raise ConfigError(
                    f"cannot make the run folder {candidate} ({e.strerror or e}); pass run_dir= a folder you can write"
                ) from None
            _CLAIMED[key] = str(candidate)
            break
    return _CLAIMED[key]


def _is_set(value: Any) -> bool:
    return value is not None and str(value).strip() not in ("", "null", "None")


def _resumed_from(run_dir: Any, resume: Any, runs_dir: Any = None) -> Path | None:
    """The run folder of the checkpoint ``resume=`` names (None: not resuming, or a checkpoint kept elsewhere;
    a bad ``resume=`` is train()'s to report, with its fix). ``resume=last`` searches ``runs_dir``."""
    root = Path(str(runs_dir)) if _is_set(runs_dir) else RUNS_ROOT
    try:
        return resolve_resume(resume, run_dir if _is_set(run_dir) else None, root, verify=False)[1]
    except Exception:  # noqa: BLE001 - reported by train(), one clear line
        return None


def same_folder(a: Path | str, b: Path | str) -> bool:
    return _key(Path(a)) == _key(Path(b))


_RESOLVED: dict[tuple, str] = {}  # resolver arguments -> the folder given to Hydra, once per process
_REFUSED: dict[str, ConfigError] = {}  # scratch folder Hydra got instead -> why the folder it asked for was refused


def refusal(hydra_dir: Path | str | None) -> ConfigError | None:
    """Why Hydra's output folder ``hydra_dir`` is a scratch folder (the run's own was refused), else None."""
    return _REFUSED.get(_key(Path(hydra_dir))) if hydra_dir is not None else None


def _run_dir_resolver(run_dir: Any, resume: Any, default: str, runs_dir: Any = None) -> str:
    """``hydra.run.dir``: ``run_dir`` if set, else the resumed run's directory (``resume=last``: the latest under
    ``runs_dir``), else ``default`` (claimed for this process before Hydra writes into it). Never raises: a
    refused folder gives Hydra a scratch folder, and ``train`` reports the refusal with the fix."""
    key = (str(run_dir), str(resume), str(default), str(runs_dir))
    if key in _RESOLVED:
        return _RESOLVED[key]
    owner = _resumed_from(run_dir, resume, runs_dir)
    try:
        folder = str(run_dir) if _is_set(run_dir) else str(owner) if owner is not None else claim_run_dir(default)
        claim_run(Path(folder), owner)
    except ConfigError as e:
        # In a folder of its own, which train() removes with it (as a run's day folder).
        scratch = Path(tempfile.mkdtemp(prefix="stnlab-refused-")) / "run"
        scratch.mkdir()
        _REFUSED[_key(scratch)] = e
        folder = str(scratch)
    _RESOLVED[key] = folder
    return folder


def _output_subdir_resolver(run_dir: Any, resume: Any, stamp: str, runs_dir: Any = None) -> str:
    """``hydra.output_subdir``: a resumed run keeps the run's own ``.hydra/`` (its original overrides) and
    records its own config in ``.hydra/resume-<stamp>/``; a new run (also one started from another run's
    checkpoint in a new ``run_dir=``) writes ``.hydra/``."""
    owner = _resumed_from(run_dir, resume, runs_dir)
    continuing = owner is not None and (not _is_set(run_dir) or same_folder(owner, str(run_dir)))
    return f".hydra/resume-{stamp}" if continuing else ".hydra"


def register_resolvers() -> None:
    """The resolvers of ``conf/train.yaml``'s hydra node; ``stnlab.new_dir`` is ``hydra.sweep.dir``: a multirun's
    own new folder."""
    resolvers = {"run_dir": _run_dir_resolver, "output_subdir": _output_subdir_resolver, "new_dir": claim_run_dir}
    for name, resolver in resolvers.items():
        if not OmegaConf.has_resolver(f"stnlab.{name}"):
            OmegaConf.register_new_resolver(f"stnlab.{name}", resolver)
