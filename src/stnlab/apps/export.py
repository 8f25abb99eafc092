"""``python src/export.py ckpt=PATH format=onnx|torchscript|exported_program [out=FILE] [wandb=true]``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from stnlab.config.checks import required, wandb_mode
from stnlab.evaluation.checkpoint_report import start_wandb_run
from stnlab.files import write_text_whole
from stnlab.query.classifier import ImageClassifier
from stnlab.query.export import (
    DTYPES,
    FORMATS,
    TOLERANCE,
    ExportError,
    check_choice,
    check_opset,
    export_classifier,
    load_exported,
    max_difference,
    sidecar,
    write_error,
)
from stnlab.tracking.run_identity import logged_config, run_name
from stnlab.training.checkpoints import config_of, load_module, resolve_checkpoint


def default_path(ckpt: Path, fmt: str) -> Path:
    """``<run dir>/export/<checkpoint name><suffix>`` for ``<run dir>/checkpoints/<name>.ckpt``, else beside it."""
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    return run_dir / "export" / (ckpt.stem + FORMATS[fmt])


def log_artifact(cfg: dict, files: list[Path], fmt: str, meta: dict[str, Any], mode: str | None) -> str | None:
    """Log ``files`` as one W&B model artifact from an ``export`` run beside them; returns the run folder."""
    import wandb as wb  # heavy to import (seconds): only the code that logs to W&B loads it

    name = run_name(cfg)
    run = start_wandb_run(
        cfg,
        files[0].parent,
        "export",
        f"{name}-export-{fmt}",
        {**logged_config(cfg), "export.format": fmt, "export.file": str(files[0])},
        mode,
    )
    if run is None:
        return None
    artifact = wb.Artifact(f"{name}-{fmt}", type="model", metadata={k: v for k, v in meta.items() if k != "classes"})
    for f in files:
        artifact.add_file(str(f))
    run.log_artifact(artifact, aliases=["latest", fmt])
    folder = run.dir
    run.finish()
    return str(Path(folder).parent)


def export(cfg: DictConfig) -> Path:
    """Export the checkpoint ``cfg.ckpt``; returns the written file (its sidecar is ``<file>.json``)."""
    ckpt = resolve_checkpoint(required(cfg, "ckpt", "<run_dir>/checkpoints/best-*.ckpt or a run folder"))
    fmt = check_choice("format", str(cfg.format), FORMATS)
    check_opset(cfg.get("opset"))
    dtype = check_choice("dtype", str(cfg.dtype), DTYPES)
    mode = wandb_mode("wandb", cfg.get("wandb", False))
    module = load_module(ckpt, "cpu")
    classifier = ImageClassifier.of(module)
    path = Path(cfg.out) if cfg.get("out") else default_path(ckpt, fmt)
    path = export_classifier(classifier, fmt, path, dtype, cfg.get("opset"))
    meta = {"checkpoint": str(ckpt.resolve()), "model": config_of(module).model, "image_size": classifier.image_size}
    if cfg.verify:
        diff = max_difference(classifier, load_exported(path, fmt), dtype)
        if not diff <= TOLERANCE:
            path.unlink(missing_ok=True)
            raise ExportError(
                f"the exported {fmt} file disagrees with PyTorch (max |logit difference| {diff:.3g} > "
                f"{TOLERANCE}); try another format="
            )
        meta["max_abs_logit_difference"] = diff
    info = sidecar(classifier, fmt, dtype, meta)
    info_path = path.with_name(path.name + ".json")
    try:
        write_text_whole(info_path, json.dumps(info, indent=2) + "\n")  # read by servers and other users: their mode
    except OSError as e:
        path.unlink(missing_ok=True)  # a model without its sidecar is half an export
        raise write_error(info_path, e) from None
    check = f" (max |logit difference| to PyTorch: {meta['max_abs_logit_difference']:.2g})" if cfg.verify else ""
    print(f"wrote {path}{check} and {info_path.name}")
    if mode != "disabled":
        folder = log_artifact(module.cfg, [path, info_path], fmt, info, mode)
        if folder:
            print(f"W&B: artifact {run_name(module.cfg)}-{fmt} in {folder}")
    return path
