"""Known third-party warnings and tips that say nothing about the run at hand, silenced once with their reasons.

A console that prints the same harmless lines on every run teaches its reader to skip it, and then the one
line that matters is missed too. What stays: Lightning's own progress and stage lines, stnlab's speed and
summary lines, and every warning not listed here.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

import torch

# (message regex, category) of each warning, with why it is harmless here.
_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    # Lightning 2.6 (and torch's own deepcopy of specs) builds pytree LeafSpecs, which torch 2.13 deprecates.
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
    # The test stage drops the weight-averaging callback on purpose: the checkpoint already holds the averaged
    # weights, which WeightAveraging.on_load_checkpoint would replace with the raw ones (training/run.py).
    (r"Be aware that when using `ckpt_path`, callbacks used to create", UserWarning),
    # callbacks.throughput reports images per second; the FLOPs the monitor asks for are not counted.
    (r"When using the `ThroughputMonitor`, you need to define a `flops_per_batch`", UserWarning),
)
# Logger name -> message fragment of an INFO line that is advertising, not information.
_LOG_LINES = {"lightning.pytorch.utilities.rank_zero": "litlogger"}


class _DropLines(logging.Filter):
    def __init__(self, fragment: str):
        super().__init__()
        self.fragment = fragment

    def filter(self, record: logging.LogRecord) -> bool:
        return self.fragment not in record.getMessage()


def silence_known_noise() -> None:
    """Filter the warnings and log lines above (idempotent: filters are added once)."""
    for message, category in _WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name, fragment in _LOG_LINES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropLines) and f.fragment == fragment for f in logger.filters):
            logger.addFilter(_DropLines(fragment))


def silence_exporters() -> None:
    """The exporters' chatter: torch.jit.trace's TracerWarnings for the transforms' shape tests (constant for a
    given network, so freezing them into the trace is right), and the ONNX stack's per-op INFO lines."""
    silence_known_noise()
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    # The ONNX exporter warns once per torchvision op it cannot register (torchvision is not installed here).
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    for name in ("onnx_ir", "onnxscript"):  # their optimiser logs every deduplicated initializer at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings(
        "ignore", message=r".*torch\.jit\.(trace|load|trace_method).* is deprecated", category=DeprecationWarning
    )


@contextlib.contextmanager
def optuna_experimental() -> Iterator[None]:
    """Around the Optuna features stnlab relies on that Optuna marks experimental (heartbeats and retries,
    metric names): its ExperimentalWarning concerns Optuna's API, not the user's sweep."""
    from optuna.exceptions import ExperimentalWarning  # only where sweeps run: training alone loads no Optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        yield
