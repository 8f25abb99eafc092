"""Inference speed on the CPU, PyTorch eager against onnxruntime: single-image latency and batch throughput.

Part of ``python src/bench.py`` (``conf/bench.yaml``'s ``inference`` section; ``make bench``).

Both engines run the same :class:`~stnlab.query.classifier.ImageClassifier` (network and
normalisation) on the same random uint8 images; the ONNX file is exported as ``src/export.py``
writes it. Each repetition times, for each engine in turn, ``calls`` single-image calls and a few
calls on a batch of ``batch`` images; the figures are medians over repetitions. Each is measured
twice: in wall-clock time and in the CPU time of the process. With one thread per engine the
two agree on an idle machine; on a shared one the wall time also counts the time the scheduler
gave to others (a 2-core machine under load made it 1.5-5x the CPU time), so the CPU time is the
figure that can be compared between runs. Presets are built untrained: speed does not depend on the weights.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from stnlab.bench.measure import preset_config
from stnlab.markdown import table
from stnlab.query.classifier import ImageClassifier
from stnlab.query.export import example_images, export_classifier, load_exported
from stnlab.training import build_module


def _per_call(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, calls: int) -> tuple[float, float]:
    """(wall, process CPU) seconds per call."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        fn(x)
    return (time.perf_counter() - wall) / calls, (time.process_time() - cpu) / calls


def inference_speed(
    classifier: ImageClassifier, batch: int, reps: int, calls: int, threads: int
) -> dict[str, dict[str, float]]:
    """``{engine: {"latency_ms", "img_per_s", "latency_ms_wall", "img_per_s_wall"}}`` for ``pytorch`` (eager,
    ``torch.inference_mode``) and ``onnxruntime`` (CPU provider): medians of the single-image time and of the
    batch throughput, in CPU time and in wall time."""
    torch.set_num_threads(threads)
    classifier = classifier.eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = export_classifier(classifier, "onnx", Path(tmp) / "model.onnx")
        engines = {"pytorch": classifier, "onnxruntime": load_exported(path, "onnx", threads=threads)}
        one, many = example_images(classifier.image_size, 1), example_images(classifier.image_size, batch)
        batch_calls = max(1, calls // 10)
        samples: dict[str, dict[str, list[tuple[float, float]]]] = {e: {"single": [], "batch": []} for e in engines}
        with torch.inference_mode():
            for fn in engines.values():  # warm-up: allocator, thread pools, ORT's first-run graph work
                _per_call(fn, one, 3)
                _per_call(fn, many, 1)
            for _ in range(reps):
                for name, fn in engines.items():
                    samples[name]["single"].append(_per_call(fn, one, calls))
                    samples[name]["batch"].append(_per_call(fn, many, batch_calls))
    out = {}
    for name, s in samples.items():
        wall, cpu = (statistics.median(t[i] for t in s["single"]) for i in (0, 1))
        batch_wall, batch_cpu = (statistics.median(t[i] for t in s["batch"]) for i in (0, 1))
        out[name] = {
            "latency_ms": 1000 * cpu,
            "img_per_s": batch / batch_cpu,
            "latency_ms_wall": 1000 * wall,
            "img_per_s_wall": batch / batch_wall,
        }
    return out


def inference_table(models: list[str], image_size: int, batch: int, reps: int, calls: int, threads: int) -> list[str]:
    """Markdown rows for :func:`inference_speed` of each preset."""
    columns = ["model", "engine", "latency, 1 image (CPU ms)", f"throughput, batch {batch} (img per CPU s)"]
    rows = []
    for model in models:
        classifier = ImageClassifier.of(build_module(preset_config(model, image_size)))
        for engine, r in inference_speed(classifier, batch, reps, calls, threads).items():
            rows.append(
                [f"{model} ({image_size} px)", engine, f"{r['latency_ms']:.2f}", f"{r['img_per_s']:.0f}"]
                + [f"{r['latency_ms_wall']:.2f}; {r['img_per_s_wall']:.0f}"]
            )
    return table([*columns, "the same in wall time (ms; img/s)"], rows, align="llrrr")
