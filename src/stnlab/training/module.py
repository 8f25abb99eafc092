"""The ``LightningModule``: one network, cross-entropy, torchmetrics accuracy, optimiser from config; and
``build``, which builds a run's parts from its config nodes with the user errors inside as one line."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from torch import nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from stnlab.data.normalize import InputNormalizer
from stnlab.errors import ConfigError, StnlabError, first_line
from stnlab.metrics import ClassWeightedAccuracy
from stnlab.training.finite_loss import FiniteWatch


def build(node: dict | None, section: str, fix: str | None = None, **kwargs):
    """``instantiate(node)`` (None for an empty node), with a user error inside (a StnlabError, or a bad value or
    argument: bad shapes, positions, trainer flags) raised as one line naming ``section`` rather than Hydra's
    wrapped traceback; ``fix`` says what to change (default: the ``section.*`` override)."""
    if not node:
        return None
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, StnlabError):
            raise cause from None
        # RuntimeError: torch refusing a shape or an allocation; ImportError: a missing backend (accelerator=tpu).
        if cause is not None and isinstance(
            cause, (ValueError, TypeError, RuntimeError, ImportError, MisconfigurationException)
        ):
            first = first_line(cause)
            raise ConfigError(f"{section}: {first}; {fix or f'fix the {section}.* override'}") from None
        raise


class NonFiniteLossError(StnlabError):
    pass


# The best validation accuracies so far, kept in checkpoints under these names (also the modules' attributes).
BESTS = ("val_acc_best", "val_acc_weighted_best")


def build_network(cfg: dict) -> nn.Module:
    """The network (``STNClassifier``) of a resolved run config: its ``model`` node, instantiated as written."""
    return build(cfg["model"], "model", fix="change model.* or data.image_size", _convert_="all")


def build_module(cfg: dict) -> STNModule:
    """The ``STNModule`` of a resolved run config (a plain dict of ``conf/train.yaml``): each part from its own
    node (``model``, ``optim``, ``scheduler``, ``augment``, ``normalize``), the module from ``module``. The config
    is kept in the module (``module.cfg``) and in its checkpoints, which therefore describe themselves."""
    parts = {
        "net": build_network(cfg),
        "optimizer": build(cfg["optim"], "optim"),
        "scheduler": build(cfg.get("scheduler"), "scheduler"),
        "augment": build(cfg.get("augment"), "augment"),
        "normalizer": build(cfg.get("normalize"), "normalize"),
    }
    module = instantiate(cfg["module"], _partial_=True)  # the module's own settings; the parts are objects
    return module(**parts, run_config=cfg)


class STNModule(pl.LightningModule):
    """Trains ``net`` on uint8 batches, normalised and (optionally) jittered on the device.

    Args:
        net: the classifier (``STNClassifier``): normalised images (N, C, H, W) -> logits (N, num_classes).
        optimizer: ``params -> Optimizer`` (a ``_partial_`` node); it gets the network's parameter groups.
        scheduler: ``optimizer -> LRScheduler`` (``_partial_``) or None. Keywords it holds as None
            (OneCycleLR's ``total_steps``, ``max_lr``) are filled from the run: the trainer's step count and
            each parameter group's own lr.
        scheduler_interval, scheduler_monitor: Lightning's ``interval`` ("epoch" | "step") and ``monitor``.
        augment: jitter applied to training batches on the device, or None.
        normalizer: uint8 images -> network input (global + local contrast normalisation), or None (/255 only).
        locnet_lr_scale: learning-rate multiplier of the localisation nets and their regressors.
        run_config: the resolved run config, saved in checkpoints so that they rebuild this module.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        scheduler_interval: str = "epoch",
        scheduler_monitor: str = "val/acc",
        augment: nn.Module | None = None,
        normalizer: nn.Module | None = None,
        label_smoothing: float = 0.0,
        locnet_lr_scale: float = 1.0,
        run_config: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.save_hyperparameters({"cfg": run_config or {}}, logger=False)
        self.cfg = run_config or {}
        self.net = net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.scheduler_interval, self.scheduler_monitor = scheduler_interval, scheduler_monitor
        self.normalizer = normalizer if normalizer is not None else InputNormalizer(3, False, False)
        self.augment = augment
        self.label_smoothing = float(label_smoothing)
        self.locnet_lr_scale = float(locnet_lr_scale)
        num_classes = int(net.num_classes)
        # validate_args=False: its input checks wait for the GPU at every step.
        self.train_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.train_loss = MeanMetric(nan_strategy="disable")  # its NaN check would wait for the GPU too
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc_best = MaxMetric()
        # Weighted by the training set's class frequencies (set in setup): the test set's mix, not validation's.
        self.val_acc_weighted = ClassWeightedAccuracy(num_classes)
        self.val_acc_weighted_best = MaxMetric()
        # NonFiniteLossError for a non-finite training loss, without a GPU sync per step (stnlab.training.finite_loss).
        self.finite_watch = FiniteWatch(self._non_finite)
        # The data's names of the classes, saved in the checkpoints (None: not trained here, nor loaded).
        self.class_names: list[str] | None = None

    @property
    def num_classes(self) -> int:
        return int(self.net.num_classes)

    @staticmethod
    def _non_finite(value: float, step: int, epoch: int) -> None:
        raise NonFiniteLossError(
            f"training loss became {value} at step {step} (epoch {epoch}); lower optim.lr or check the input data"
        )

    def on_train_epoch_end(self) -> None:
        self.finite_watch.flush()
        # Epoch means over every rank's samples (the metrics sync once here), logged once: self.log is
        # not cheap (~0.5 ms of Python), so a step logs only its loss.
        self.log("train/loss_epoch", self.train_loss)
        self.log("train/acc", self.train_acc)

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if stage == "fit" and dm is not None and getattr(dm, "mean", None) is not None:
            self.normalizer.set_stats(dm.mean.float(), dm.std.float())
        if getattr(dm, "class_names", None) is not None:
            self.class_names = list(dm.class_names)
        frequencies = getattr(dm, "class_frequencies", None) if dm is not None else None
        if frequencies is not None:
            self.val_acc_weighted.set_weights(frequencies)

    def preprocess(self, images: torch.Tensor, train: bool = False) -> torch.Tensor:
        x = images.float()
        if train and self.augment is not None:
            x = self.augment(x)
        return self.normalizer(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 or float images in [0, 255], (N, 3, H, W) -> logits (N, num_classes)."""
        return self.net(self.preprocess(images))

    def training_step(self, batch, batch_idx):
        images, labels = batch
        logits = self.net(self.preprocess(images, train=True))
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        self.finite_watch(loss, self.global_step, self.current_epoch)
        self.train_acc.update(logits, labels)
        self.train_loss.update(loss.detach().expand(len(labels)))  # one weight per image
        # Lightning reads prog_bar values back after every batch (a GPU sync), bar or no bar: only with a bar.
        bar = self._trainer is not None and self._trainer.progress_bar_callback is not None
        self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=bar, batch_size=len(labels))
        return loss

    def _eval_step(self, batch, stage: str, metric):
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels)
        metric(logits, labels)
        self.log(f"{stage}/loss", loss, on_epoch=True, sync_dist=True, batch_size=len(labels))
        self.log(f"{stage}/acc", metric, on_epoch=True, prog_bar=True, batch_size=len(labels))
        return logits

    def validation_step(self, batch, batch_idx):
        logits = self._eval_step(batch, "val", self.val_acc)
        self.val_acc_weighted.update(logits, batch[1])

    def on_validation_epoch_end(self):
        weighted = self.val_acc_weighted.compute()
        self.val_acc_weighted.reset()
        if self.trainer.sanity_checking:
            return
        self.log("val/acc_weighted", weighted, sync_dist=True)
        self.val_acc_best(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True)
        self.val_acc_weighted_best(weighted)
        self.log("val/acc_weighted_best", self.val_acc_weighted_best.compute(), sync_dist=True)

    # Resuming (see stnlab.training.resume): what Lightning's own checkpoint state leaves out.
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        bests = {name: getattr(self, name) for name in BESTS}
        state = {name: float(m.compute()) if m.update_called else None for name, m in bests.items()}
        state["rng"] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["rng"]["torch.cuda"] = torch.cuda.get_rng_state_all()
        if self.class_names is not None:  # what predict, serve and export call the classes
            state["class_names"] = list(self.class_names)
        checkpoint["stnlab"] = state

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("stnlab") or {}
        for name in BESTS:  # torchmetrics states are not in the state_dict
            if state.get(name) is not None:
                getattr(self, name).update(torch.tensor(state[name]))
        self._rng_to_restore = state.get("rng")
        self.class_names = state.get("class_names") or self.class_names

    def on_train_batch_start(self, batch, batch_idx):
        # Restored at the first batch after resuming: the augmentation then draws as in an uninterrupted run.
        rng = getattr(self, "_rng_to_restore", None)
        if rng is not None:
            self._rng_to_restore = None
            torch.set_rng_state(rng["torch"])
            if (
                rng.get("torch.cuda")
                and torch.cuda.is_available()
                and len(rng["torch.cuda"]) == torch.cuda.device_count()
            ):
                torch.cuda.set_rng_state_all(rng["torch.cuda"])

    def test_step(self, batch, batch_idx):
        # How many images the test saw: the committee's 99.46% is compared only with a whole official test set.
        n = len(batch[1])
        self.log(
            "data/test_images", float(n), on_step=False, on_epoch=True, reduce_fx="sum", sync_dist=True, batch_size=n
        )
        return self._eval_step(batch, "test", self.test_acc)  # logits, for callbacks (evaluation.TestReport)

    def configure_optimizers(self):
        lr = float(self.optimizer_factory.keywords["lr"])
        scaled = {
            "locnet": {"lr": lr * self.locnet_lr_scale},
            "regressor": {"lr": lr * self.locnet_lr_scale, "weight_decay": 0.0},
        }
        # Named groups: LearningRateMonitor logs each group's lr under its name.
        groups = [
            {"params": params, "name": name, **scaled.get(name, {})}
            for name, params in self.net.parameter_groups().items()
        ]
        optimizer = self.optimizer_factory(groups)
        if self.scheduler_factory is None:
            return optimizer
        keywords = getattr(self.scheduler_factory, "keywords", {})
        run_kw = {}
        if "total_steps" in keywords and keywords["total_steps"] is None:
            run_kw["total_steps"] = int(self.trainer.estimated_stepping_batches)
        if "max_lr" in keywords and keywords["max_lr"] is None:
            run_kw["max_lr"] = [g["lr"] for g in optimizer.param_groups]
        scheduler = self.scheduler_factory(optimizer, **run_kw)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "interval": self.scheduler_interval,
                "monitor": self.scheduler_monitor,
            },
        }
