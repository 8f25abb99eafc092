"""Writing a :class:`~stnlab.evaluation.metrics.Report` to a folder: ``<split>_report.json`` plus two PNGs."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stnlab.errors import StnlabError
from stnlab.evaluation.metrics import Report
from stnlab.evaluation.plots import confusion_figure, errors_figure, save


@contextlib.contextmanager
def writing_into(out_dir: Path) -> Iterator[Path]:
    """``out_dir``, made if needed, to write into; an OSError on the way (a file by that name, no permission, a
    full disk) is one line naming ``out=``."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        yield out_dir
    except OSError as e:
        raise StnlabError(f"cannot write into {out_dir} ({e.strerror or e}); pass out= a writable folder") from None


def write_report(
    report: Report, out_dir: Path | str, split: str, meta: dict[str, Any] | None = None
) -> dict[str, Path]:
    """Write ``<split>_report.json``, ``<split>_confusion.png`` and ``<split>_errors.png`` into ``out_dir``.

    Returns ``{"json": ..., "confusion": ..., "errors": ...}`` (the PNG keys are the W&B media names).
    """
    data = {"split": split, **(meta or {}), **report.as_dict()}
    with writing_into(Path(out_dir)) as out_dir:
        paths = {"json": out_dir / f"{split}_report.json"}
        paths["json"].write_text(json.dumps(data, indent=1))
        images = f"{split} split, {report.num_images} images"
        scores = f"accuracy {100 * report.accuracy:.2f}%, macro F1 {100 * report.f1_macro:.2f}%"
        confusion = confusion_figure(report, f"Confusion, {images}: {scores}")
        paths["confusion"] = save(confusion, out_dir / f"{split}_confusion.png")
        title = f"The {len(report.errors)} most confident of {report.num_errors} errors, {images}"
        paths["errors"] = save(errors_figure(report, title=title), out_dir / f"{split}_errors.png")
    return paths
