"""The classifier (network + normalisation, :class:`~stnlab.query.classifier.ImageClassifier`) as a file that
runs without stnlab: ONNX, TorchScript or a ``torch.export`` ExportedProgram.

Every format takes RGB images (N, 3, S, S) in [0, 255] (uint8 by default, ``dtype=float32`` for
float input) at the training size S, any N, and returns logits (N, 43). A JSON sidecar
``<file>.json`` states this, the class names and the preprocessing a caller must do (resize
the whole image to S x S with a bilinear filter, no normalisation: the model does it).

- ``onnx``: ``torch.onnx.export(..., dynamo=True)``, the ``torch.export``-based exporter (the
  TorchScript-based one is deprecated in torch 2.13). ``F.grid_sample`` becomes ONNX GridSample
  (opset >= 16; this exporter writes 18 to 23, by default 20); affine, projective and TPS STs all export.
- ``torchscript``: ``torch.jit.trace`` (deprecated by PyTorch in favour of ``torch.export``, kept
  for C++ ``torch::jit::load`` users).
- ``exported_program``: ``torch.export.save``; load with ``torch.export.load(path).module()``.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stnlab.errors import ConfigError, StnlabError, described
from stnlab.files import written_whole
from stnlab.noise import silence_exporters
from stnlab.query.classifier import ImageClassifier

FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "exported_program": ".pt2"}
DTYPES = {"uint8": torch.uint8, "float32": torch.float32}
TOLERANCE = 1e-4  # max |logit difference| accepted between the exported file and PyTorch
OPSETS = (18, 23)  # what the torch.export-based ONNX exporter of torch 2.13 writes (it cannot go below 18)


class ExportError(StnlabError):
    """The network could not be exported, or the exported file disagrees with PyTorch."""


def check_choice(key: str, value: str, choices: dict) -> str:
    if value not in choices:
        raise ConfigError(f"{key}={value} is not one of {', '.join(choices)}")
    return value


def check_opset(opset) -> int | None:
    if opset is None:
        return None
    if isinstance(opset, bool) or not isinstance(opset, int) or not OPSETS[0] <= opset <= OPSETS[1]:
        raise ConfigError(
            f"opset={opset}: the ONNX exporter writes opsets {OPSETS[0]}..{OPSETS[1]}; "
            "pass one of those or leave it null (20)"
        )
    return opset


def example_images(image_size: int, batch: int = 3, dtype: str = "uint8", seed: int = 0) -> torch.Tensor:
    """Random images (batch, 3, S, S) in [0, 255] of ``dtype``."""
    check_choice("dtype", dtype, DTYPES)
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, image_size, image_size), generator=g, dtype=torch.uint8).to(DTYPES[dtype])


def _write(classifier: ImageClassifier, fmt: str, path: Path, x: torch.Tensor, opset: int | None) -> None:
    batch = torch.export.Dim("batch", min=1)
    if fmt == "onnx":
        program = torch.onnx.export(
            classifier,
            (x,),
            dynamic_shapes=({0: batch},),
            input_names=["images"],
            output_names=["logits"],
            dynamo=True,
            opset_version=opset,
            verbose=False,
        )
        program.save(str(path))
        return
    # Serialised in memory, then written by Python: torch's C++ file writer aborts the interpreter on a full
    # disk ("terminate called after throwing an instance of 'c10::Error'") instead of raising.
    buffer = io.BytesIO()
    if fmt == "torchscript":
        torch.jit.save(torch.jit.trace(classifier, (x,)), buffer)
    else:
        torch.export.save(torch.export.export(classifier, (x,), dynamic_shapes=({0: batch},)), buffer)
    path.write_bytes(buffer.getvalue())


def write_error(path: Path, error: OSError) -> ExportError:
    """A file that cannot be written (a read-only folder, a full disk) as one line naming the fix."""
    return ExportError(
        f"cannot write {path} ({error.strerror or error}); pass out= a file in a writable folder with free space"
    )


def export_classifier(
    classifier: ImageClassifier, fmt: str, path: Path | str, dtype: str = "uint8", opset: int | None = None
) -> Path:
    """Write ``classifier`` as ``fmt`` to ``path`` (through a temporary file: ``path`` appears only complete, and
    the temporary file is removed on any failure)."""
    check_choice("format", fmt, FORMATS)
    check_opset(opset)
    silence_exporters()
    path = Path(path)
    x = example_images(classifier.image_size, 3, dtype)
    classifier = classifier.eval()
    with torch.no_grad():
        classifier(x)  # fills the transforms' per-device constant caches, so a trace sees them as constants
    try:
        # Written whole, with the mode of any other output (servers and other users read it).
        with written_whole(path) as part, torch.no_grad():
            _write(classifier, fmt, part, x, opset)
    except StnlabError:
        raise
    except OSError as e:
        raise write_error(path, e) from None
    except Exception as e:  # noqa: BLE001 - any exporter failure is reported as one line
        raise ExportError(
            f"exporting to {fmt} failed ({described(e, 300)}); "
            "try another format= (exported_program is the most permissive)"
        ) from None
    return path


def format_of(path: Path | str) -> str:
    name = str(path)
    for fmt, suffix in sorted(FORMATS.items(), key=lambda kv: -len(kv[1])):
        if name.endswith(suffix):
            return fmt
    raise ConfigError(f"{path}: unknown export suffix; expected one of {', '.join(FORMATS.values())}")


def load_exported(
    path: Path | str, fmt: str | None = None, threads: int | None = None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function images (N, 3, S, S) -> logits (N, 43) (CPU tensors) running the exported file ``path``."""
    fmt = fmt or format_of(path)
    silence_exporters()
    if fmt == "onnx":
        import onnxruntime as ort  # optional and heavy: only an ONNX export's check runs it

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = options.inter_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda images: torch.from_numpy(session.run(None, {name: np.ascontiguousarray(images.numpy())})[0])
    if fmt == "torchscript":
        module = torch.jit.load(str(path))
    else:
        with open(path, "rb") as f:
            module = torch.export.load(f).module()
    return lambda images: module(images).detach()


@torch.no_grad()
def max_difference(
    classifier: ImageClassifier,
    run: Callable[[torch.Tensor], torch.Tensor],
    dtype: str = "uint8",
    batches: tuple[int, ...] = (1, 3, 7),
) -> float:
    """Largest |logit| difference between ``run`` and ``classifier`` over random batches of these sizes."""
    worst = 0.0
    for n in batches:
        x = example_images(classifier.image_size, n, dtype, seed=n)
        worst = max(worst, float((run(x).float() - classifier(x).float()).abs().max()))
    return worst


def sidecar(classifier: ImageClassifier, fmt: str, dtype: str, extra: dict[str, Any]) -> dict[str, Any]:
    """What a caller of the exported file needs to know."""
    s = classifier.image_size
    return {
        "format": fmt,
        "input": {
            "name": "images",
            "shape": ["N", 3, s, s],
            "dtype": dtype,
            "range": [0, 255],
            "channels": "RGB",
            "preprocessing": f"resize the whole image to {s}x{s} with a bilinear filter (PIL "
            "Image.resize(..., BILINEAR)); no normalisation, the model applies its own",
        },
        "output": {
            "name": "logits",
            "shape": ["N", len(classifier.class_names)],
            "meaning": "class scores; softmax gives probabilities",
        },
        "classes": classifier.class_names,
        **extra,
    }
