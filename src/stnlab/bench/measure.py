"""Throughput measurements: the Lightning training loop and a plain PyTorch loop on the same batches.

Both loops train a copy of the same ``STNModule`` (same seed, same weights) with the same
optimiser, precision, memory format and batches (the data module's own train loader), in
the same process; repetitions alternate between them and medians are reported. Timed
windows start after ``warmup`` steps and end with a device sync. "Data" is the share of a
loop's wall time spent inside the loader's ``next()``, the copy to the device included.
"Ops" counts the tensor operations one training step dispatches (forward, backward and
optimiser, Lightning's own work included): on a GPU each is at least one kernel launch
and ~10 us of Python and dispatcher time, so for small batches they, not FLOPs, bound the step.
"""

from __future__ import annotations

import contextlib
import copy
import resource
import statistics
import tempfile
import time
from dataclasses import dataclass, field

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
import torch.utils.benchmark as benchmark
from omegaconf import OmegaConf
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from stnlab.config import compose_train
from stnlab.data.gtsrb import Split
from stnlab.data.tensors import TensorDataModule
from stnlab.training.module import STNModule, build_module
from stnlab.training.speed import SpeedSwitches, resident_device, use_channels_last

GTSRB_TRAIN = 39209  # images in the official training set
# Dense bf16 tensor-core peaks (TFLOP/s) for the fraction-of-peak column.
BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "A10": 125.0}


def bf16_peak(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class OpCounter(TorchDispatchMode):
    """Counts the aten operations dispatched while active (below autograd: backward ops count too)."""

    def __init__(self):
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        return func(*args, **(kwargs or {}))


def preset_config(model: str, image_size: int, *overrides: str) -> dict:
    """The resolved run config of a model preset (speed does not depend on the weights: presets run untrained)."""
    cfg = compose_train([f"model={model}", f"data.image_size={image_size}", *overrides])
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


class RandomData(TensorDataModule):
    """Random uint8 images of the GTSRB shape (43 classes): enough for throughput, not for accuracy."""

    name = "random"

    def __init__(self, num_train: int, image_size: int, batch_size: int, eval_batch_size: int, num_val: int):
        super().__init__(batch_size, eval_batch_size, 0, image_size)
        self.num_train, self.num_val = num_train, num_val

    def load(self):
        g = torch.Generator().manual_seed(0)

        def split(n):
            images = torch.randint(0, 256, (n, 3, self.image_size, self.image_size), dtype=torch.uint8, generator=g)
            return Split(images, torch.randint(0, 43, (n,), generator=g), torch.zeros(n, dtype=torch.long))

        return split(self.num_train), split(max(self.num_val, 1)), None


class TimedBatches:
    """Wraps a loader: times each ``next()`` plus the copy of the batch to ``device``."""

    def __init__(self, loader, device: torch.device):
        self.loader, self.device = loader, device
        self.seconds = 0.0

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        t = time.perf_counter()
        for images, labels in self.loader:
            batch = images.to(self.device), labels.to(self.device)
            self.seconds += time.perf_counter() - t
            yield batch
            t = time.perf_counter()


@dataclass
class LoopTiming:
    images: int = 0
    seconds: float = 0.0
    data_seconds: float = 0.0
    ops: int | None = None  # tensor ops dispatched by one training step

    @property
    def img_per_s(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0

    @property
    def data_share(self) -> float:
        return self.data_seconds / self.seconds if self.seconds else 0.0


class StepWindow(pl.Callback):
    """Times batches ``warmup`` .. ``warmup + steps - 1`` of ``batches`` (device-synced at both ends) and counts the
    ops of the last warm-up batch (untimed). The plain loop calls its hooks by hand."""

    def __init__(self, warmup: int, steps: int, setup: Setup, batches: TimedBatches):
        self.warmup, self.last, self.device, self.batches = warmup, warmup + steps - 1, setup.device, batches
        self.timing = LoopTiming()
        self._t0 = self._d0 = 0.0
        # A dispatch mode would force a compiled model back to eager (or recompile it): not the step we time.
        self._counter = OpCounter() if warmup > 0 and not setup.speed.get("compile") else None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self._counter is not None and batch_idx == self.warmup - 1:
            self._counter.__enter__()
        if batch_idx == self.warmup:
            sync(self.device)
            self._t0, self._d0 = time.perf_counter(), self.batches.seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self._counter is not None and batch_idx == self.warmup - 1:
            self._counter.__exit__(None, None, None)
            self.timing.ops = self._counter.ops
        if batch_idx >= self.warmup:
            self.timing.images += len(batch[1])
        if batch_idx == self.last:
            sync(self.device)
            self.timing.seconds = time.perf_counter() - self._t0
            self.timing.data_seconds = self.batches.seconds - self._d0


@dataclass
class Setup:
    """How both loops run: the device and the speed switches of a run on it."""

    device: torch.device
    precision: str = "32-true"  # Lightning's name; bf16-mixed = autocast to bfloat16
    benchmark: bool = False
    speed: dict = field(default_factory=dict)

    def autocast(self):
        if self.precision.startswith("bf16") and self.precision != "bf16-true":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


def fit(module: STNModule, data, setup: Setup, timer: pl.Callback, progress: bool, **limits) -> None:
    """``Trainer.fit`` on ``data`` (a data module or a loader) as ``src/train.py`` runs it on ``setup`` (CSV logging
    every 20 steps, the speed switches), timed by ``timer``, without validation, checkpoints or model summary.
    ``limits``: max_epochs, limit_train_batches."""
    with tempfile.TemporaryDirectory() as tmp:
        trainer = pl.Trainer(
            accelerator=setup.device.type,
            devices=1,
            precision=setup.precision,
            benchmark=setup.benchmark,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            logger=pl.loggers.CSVLogger(tmp, name="csv"),
            log_every_n_steps=20,
            enable_checkpointing=False,
            enable_progress_bar=progress,
            enable_model_summary=False,
            default_root_dir=tmp,
            callbacks=[timer, SpeedSwitches(setup.speed)],
            **limits,
        )
        trainer.fit(module, data)  # Lightning takes a data module in the loaders' place


def lightning_train(module: STNModule, data: TensorDataModule, setup: Setup, warmup: int, steps: int) -> LoopTiming:
    """One ``Trainer.fit`` of ``warmup + steps`` batches, as ``src/train.py`` runs it (CSV logging every 20 steps)."""
    timed = TimedBatches(data.train_dataloader(), setup.device)
    window = StepWindow(warmup, steps, setup, timed)
    fit(module, timed, setup, window, False, max_epochs=1, limit_train_batches=warmup + steps)
    return window.timing


class PlainLoop:
    """The same network trained by hand: preprocess, forward, cross-entropy, backward, step."""

    def __init__(self, module: STNModule, data: TensorDataModule, setup: Setup):
        self.module, self.data, self.setup = module, data, setup
        module.to(setup.device)
        if use_channels_last(setup.speed.get("channels_last", "auto"), setup.device):
            module.to(memory_format=torch.channels_last)
        module.train()
        opt = module.configure_optimizers()
        self.optimizer = opt["optimizer"] if isinstance(opt, dict) else opt

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with self.setup.autocast():
            logits = self.module.net(self.module.preprocess(images, train=True))
            loss = F.cross_entropy(logits, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss

    def run(self, warmup: int, steps: int) -> LoopTiming:
        timed = TimedBatches(self.data.train_dataloader(), self.setup.device)
        window = StepWindow(warmup, steps, self.setup, timed)
        for i, batch in enumerate(timed):
            window.on_train_batch_start(None, None, batch, i)
            self.step(*batch)
            window.on_train_batch_end(None, None, None, batch, i)
            if i == window.last:
                break
        return window.timing

    def flops_per_image(self) -> float:
        """FLOPs of one training step (forward and backward, as counted by FlopCounterMode) per image."""
        images, labels = (t.to(self.setup.device) for t in next(iter(self.data.train_dataloader())))
        with FlopCounterMode(display=False) as counter:
            self.step(images, labels)
        return counter.get_total_flops() / len(labels)


@torch.inference_mode()
def inference(module: STNModule, images: torch.Tensor, setup: Setup, reps: int) -> float:
    """Images per second of ``module(images)`` (preprocessing included), over ``reps`` timed passes after warm-up
    ones (cuDNN autotuning, allocator); torch.utils.benchmark syncs the GPU around them."""
    module.eval()
    timer = benchmark.Timer(
        "module(images)", globals={"module": module, "images": images}, num_threads=torch.get_num_threads()
    )
    with setup.autocast():
        seconds = timer.timeit(reps).median
    module.train()
    return len(images) / seconds


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux: the process's peak RSS


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


@dataclass
class ModelResult:
    model: str
    image_size: int
    params: int
    lightning: list[LoopTiming]
    plain: list[LoopTiming]
    infer_img_per_s: float
    train_peak_mb: float
    infer_peak_mb: float
    gflops_per_image: float

    def ops(self, loop: str) -> int | None:
        """Tensor ops of one training step of ``loop`` (None where they were not counted)."""
        return next((t.ops for t in getattr(self, loop) if t.ops is not None), None)

    @property
    def ratio(self) -> float:
        """Median over repetitions of Lightning img/s / plain img/s (each pair measured back to back)."""
        return statistics.median(lt.img_per_s / pt.img_per_s for lt, pt in zip(self.lightning, self.plain))

    def median(self, loop: str, attr: str) -> float:
        return statistics.median(getattr(t, attr) for t in getattr(self, loop))


def bench_model(
    name: str, cfg: dict, data: TensorDataModule, setup: Setup, warmup: int, steps: int, reps: int
) -> ModelResult:
    """Alternating repetitions of the Lightning and the plain loop on one model preset."""
    pl.seed_everything(cfg.get("seed", 0), verbose=False)
    module = build_module(cfg)
    data.setup("fit")
    data.resident_device = resident_device(
        setup.speed.get("device_resident", "auto"), setup.device, data.train.images.numel() + data.val.images.numel()
    )
    module.normalizer.set_stats(data.mean.float(), data.std.float())
    plain = PlainLoop(copy.deepcopy(module), data, setup)
    reset_peak(setup.device)
    lightning, plain_t = [], []
    for _ in range(reps):
        lightning.append(lightning_train(module, data, setup, warmup, steps))
        plain_t.append(plain.run(warmup, steps))
    train_peak = peak_memory_mb(setup.device)
    gflops = plain.flops_per_image() / 1e9
    n_eval = min(len(data.val), data.eval_batch_size)
    eval_images = data.val.images[:n_eval].to(setup.device)
    if n_eval < data.eval_batch_size:  # random data: repeat up to one evaluation batch
        eval_images = eval_images.repeat((data.eval_batch_size + n_eval - 1) // n_eval, 1, 1, 1)[: data.eval_batch_size]
    reset_peak(setup.device)
    infer = inference(plain.module, eval_images, setup, reps=2)
    infer_peak = peak_memory_mb(setup.device)
    params = sum(p.numel() for p in module.net.parameters())
    return ModelResult(name, data.image_size, params, lightning, plain_t, infer, train_peak, infer_peak, gflops)


class EpochTimer(pl.Callback):
    """Wall time of every training epoch (device-synced), and the images it saw."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: list[float] = []
        self.images = 0
        self._t0 = 0.0

    def on_train_epoch_start(self, trainer, pl_module):
        sync(self.device)
        self._t0, self.images = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.images += len(batch[1])

    def on_train_epoch_end(self, trainer, pl_module):
        sync(self.device)
        self.seconds.append(time.perf_counter() - self._t0)


@dataclass
class EpochResult:
    model: str
    image_size: int
    batch_size: int
    images: int
    seconds: list[float]
    gflops_per_image: float
    peak_tflops: float | None
    variant: str

    @property
    def tflops(self) -> float:
        return self.gflops_per_image * self.images / min(self.seconds) / 1e3

    @property
    def peak_fraction(self) -> float | None:
        return self.tflops / self.peak_tflops if self.peak_tflops else None


def full_epochs(
    name: str, cfg: dict, data: TensorDataModule, setup: Setup, epochs: int, variant: str, progress: bool
) -> EpochResult:
    """``epochs`` whole training epochs through ``Trainer.fit``, as a run does them (no validation)."""
    pl.seed_everything(cfg.get("seed", 0), verbose=False)
    timer = EpochTimer(setup.device)
    fit(build_module(cfg), data, setup, timer, progress, max_epochs=epochs)
    data.resident_device = None  # the next variant decides afresh
    pl.seed_everything(cfg.get("seed", 0), verbose=False)
    gflops = PlainLoop(build_module(cfg), data, setup).flops_per_image() / 1e9  # an uncompiled copy
    return EpochResult(
        name, data.image_size, data.batch_size, timer.images, timer.seconds, gflops, bf16_peak(setup.device), variant
    )
