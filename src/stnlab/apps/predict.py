"""``python src/predict.py ckpt=PATH input=IMAGE|FOLDER|VIDEO [track=C/T] [top_k=5] [show_st=true]``.

Writes ``predictions.csv`` (one row per image or frame: its name, index and the top-k class ids,
names and probabilities) and ``predictions.json`` (the same, plus the checkpoint, the input kind
and, for a sequence, the top-k of the probabilities averaged over its frames) to ``out``; with
``show_st``, ``st/<image>.png`` per image, or ``st.gif`` and ``st.mp4`` for a video or track.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from stnlab.config.checks import positive_key, positive_number, required
from stnlab.errors import ConfigError
from stnlab.query.figures import figure, st_views, write_animation_gif, write_mp4
from stnlab.query.images import Query, read_query
from stnlab.query.outputs import Staging
from stnlab.query.predictor import Guess, Predictor, check_top_k
from stnlab.training.checkpoints import config_of, load_module, pick_device, resolve_checkpoint

log = logging.getLogger(__name__)
PRINTED = 20  # rows printed before "... N more"
TRACK_FPS = 5.0  # frames per second of an animated folder or track (a video keeps its own rate)
MAX_DISPLAY = 1024  # display_size's bound: 500 frames' copies then take at most 1.5 GB


def _figure_names(query: Query) -> list[str]:
    names, seen = [], set()
    for i, frame in enumerate(query.frames):
        stem = Path(frame.name).stem
        name = f"st/{stem}.png" if stem not in seen else f"st/{stem}-{i}.png"
        seen.add(stem)
        names.append(name)
    return names


def _caption(name: str, guesses: list[Guess]) -> str:
    return f"{name}: " + "  |  ".join(str(g) for g in guesses[:3])


def _figures(predictor: Predictor, query: Query, guesses: list[list[Guess]]):
    """One figure per frame, traced in batches."""
    module, size = predictor.module, predictor.batch_size
    for start in range(0, len(query.frames), size):
        frames = query.frames[start : start + size]
        views, outlines = st_views(module, torch.stack([f.pixels for f in frames]))
        for i, frame in enumerate(frames):
            yield figure(frame.display, views, outlines, i, _caption(frame.name, guesses[start + i]))


def _ranked(guesses: list[Guess]) -> str:
    return "  ".join(f"{r}. {g}" for r, g in enumerate(guesses, 1))


def _print(query: Query, guesses: list[list[Guess]], sequence: list[Guess] | None) -> None:
    for frame, row in list(zip(query.frames, guesses))[:PRINTED]:
        print(f"{frame.name}: " + _ranked(row))
    if len(guesses) > PRINTED:
        print(f"... {len(guesses) - PRINTED} more in predictions.csv")
    if sequence:
        print(f"{query.kind} (mean over {len(guesses)} frames): " + _ranked(sequence))


def on_error(value: Any) -> bool:
    """``on_error``: skip (an unreadable file of a folder is left out) -> True, stop -> False."""
    if value not in ("skip", "stop"):
        raise ConfigError(f"on_error={value} must be skip or stop")
    return value == "skip"


def predict(cfg: DictConfig) -> dict[str, Any]:
    """Classify what ``cfg.input`` names with the checkpoint ``cfg.ckpt``; returns the JSON written."""
    ckpt = resolve_checkpoint(required(cfg, "ckpt", "<run_dir>/checkpoints/best-*.ckpt or a run folder"))
    source = required(cfg, "input", "an image, a folder of images, a video or a GTSRB folder/zip with track=C/T")
    batch_size, display_size = positive_key(cfg, "batch_size"), positive_key(cfg, "display_size")
    if display_size > MAX_DISPLAY:  # a copy of every frame is kept at this size
        raise ConfigError(f"display_size={display_size}: expected at most {MAX_DISPLAY} pixels")
    frame_step = positive_key(cfg, "frame_step")
    max_frames = None if cfg.get("max_frames") is None else positive_key(cfg, "max_frames")
    fps = cfg.get("fps")
    if fps is not None:
        positive_number("fps", fps, "a positive number of frames per second, or null")
    device = pick_device(cfg.device)
    predictor = Predictor(load_module(ckpt, device), device, batch_size)
    info = config_of(predictor.module)
    k = check_top_k(cfg.top_k, info.num_classes, ckpt)  # the checkpoint's classes, so after loading it
    if info.crop_roi:
        log.warning(
            "%s was trained on images cropped to the sign (data.crop_roi=true): crop inputs tightly around "
            "the sign, as the whole image is classified",
            ckpt,
        )
    skip = on_error(cfg.get("on_error", "skip"))
    query = read_query(source, predictor.image_size, display_size, cfg.get("track"), max_frames, frame_step, skip)
    probs = predictor.probabilities(query.pixels)
    guesses = predictor.top_k(probs, k)
    sequence = predictor.top_k(probs.mean(0, keepdim=True), k)[0] if query.is_sequence else None
    model = info.model
    payload: dict[str, Any] = {
        "checkpoint": str(Path(ckpt).resolve()),
        "model": model,
        "image_size": predictor.image_size,
        "input": query.source,
        "kind": query.kind,
        "top_k": k,
        "items": [
            {"name": f.name, "index": i, "top": [asdict(g) for g in row]}
            for i, (f, row) in enumerate(zip(query.frames, guesses))
        ],
    }
    if sequence is not None:
        payload["sequence"] = {"frames": len(guesses), "top": [asdict(g) for g in sequence]}
    if query.skipped:
        payload["skipped"] = [{"file": where, "reason": why} for where, why in query.skipped]
    # By default in paths.outputs_dir (outputs/, which git ignores), under the input's name.
    label = re.sub(r"[^\w.-]+", "_", query.label)
    out = Path(cfg.out) if cfg.get("out") else Path(cfg.paths.outputs_dir) / "predictions" / label
    with Staging(out) as stage:
        if cfg.show_st:
            if not predictor.module.net.transformers:
                log.warning("%s has no spatial transformer: the figures show the input and the prediction only", model)
            images = list(_figures(predictor, query, guesses))
            if query.is_sequence:
                rate = float(fps or query.fps or TRACK_FPS)
                write_animation_gif(images, stage.path("st.gif"), rate)
                write_mp4(images, stage.path("st.mp4"), rate)
            else:
                for name, image in zip(_figure_names(query), images):
                    image.save(stage.path(name))
            payload["figures"] = list(stage.files)
        header = ["name", "index"] + [f"{c}_{r}" for r in range(1, k + 1) for c in ("class", "name", "prob")]
        rows = [
            [f.name, i] + [v for g in row for v in (g.class_id, g.name, f"{g.prob:.6f}")]
            for i, (f, row) in enumerate(zip(query.frames, guesses))
        ]
        with stage.path("predictions.csv").open("w", newline="") as f:
            csv.writer(f).writerows([header, *rows])
        stage.path("predictions.json").write_text(json.dumps(payload, indent=2) + "\n")
        written = stage.commit()
    _print(query, guesses, sequence)
    if query.skipped:
        print(
            f"skipped {len(query.skipped)} of {len(query.skipped) + len(query.frames)} files (unreadable, listed in "
            "predictions.json and above); on_error=stop stops at the first instead"
        )
    print(
        f"wrote {', '.join(p.name for p in written if p.parent == out)}"
        f"{' and st/*.png' if any(p.parent.name == 'st' for p in written) else ''} to {out}"
    )
    return payload
