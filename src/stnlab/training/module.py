"""The ``LightningModule``: one network, cross-entropy, torchmetrics accuracy, optimiser from config."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from torchmetrics import MaxMetric
from torchmetrics.classification import MulticlassAccuracy

from stnlab.data.normalize import InputNormalizer
from stnlab.errors import StnlabError


class NonFiniteLossError(StnlabError):
    pass


def build_network(cfg: dict):
    """The ``STNClassifier`` described by a resolved run config (``model`` and ``transform`` sections)."""
    model_cfg = {k: v for k, v in cfg["model"].items() if k != "locnet_lr_scale"}
    model_cfg["default_transform"] = cfg.get("transform")
    try:
        return instantiate(model_cfg, _convert_="all")
    except InstantiationException as e:
        # Surface the network's own message (bad shapes, positions) rather than Hydra's wrapper.
        if isinstance(e.__cause__, ValueError):
            raise e.__cause__ from None
        raise


class STNModule(pl.LightningModule):
    """Trains ``build_network(cfg)`` on uint8 batches, normalised and (optionally) jittered on the device.

    ``cfg`` is the whole resolved run config (a plain dict), stored in checkpoints so
    that ``STNModule.load_from_checkpoint(path)`` rebuilds the same network.
    """

    def __init__(self, cfg: dict[str, Any]):
        super().__init__()
        self.save_hyperparameters({"cfg": cfg})
        self.cfg = cfg
        self.net = build_network(cfg)
        norm = cfg.get("normalize") or {}
        self.normalizer = InputNormalizer(3, norm.get("global_norm", True), norm.get("local_norm", True))
        self.augment = instantiate(cfg["augment"]) if cfg.get("augment") else None
        num_classes = cfg["model"].get("num_classes", 43)
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc_best = MaxMetric()

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if stage == "fit" and dm is not None and getattr(dm, "mean", None) is not None:
            self.normalizer.set_stats(dm.mean.float(), dm.std.float())

    def preprocess(self, images: torch.Tensor, train: bool = False) -> torch.Tensor:
        x = images.float()
        if train and self.augment is not None:
            x = self.augment(x)
        return self.normalizer(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 or float images in [0, 255], (N, 3, H, W) -> logits (N, 43)."""
        return self.net(self.preprocess(images))

    def training_step(self, batch, batch_idx):
        images, labels = batch
        logits = self.net(self.preprocess(images, train=True))
        loss = F.cross_entropy(logits, labels)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"training loss became {loss.item()} at step {self.global_step} (epoch {self.current_epoch}); "
                "lower optim.lr or check the input data"
            )
        self.train_acc(logits, labels)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(labels))
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, batch_size=len(labels))
        return loss

    def _eval_step(self, batch, stage: str, metric):
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels)
        metric(logits, labels)
        self.log(f"{stage}/loss", loss, on_epoch=True, sync_dist=True, batch_size=len(labels))
        self.log(f"{stage}/acc", metric, on_epoch=True, prog_bar=True, batch_size=len(labels))

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val", self.val_acc)

    def on_validation_epoch_end(self):
        if self.trainer.sanity_checking:
            return
        self.val_acc_best(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True)

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test", self.test_acc)

    def configure_optimizers(self):
        scale = float(self.cfg["model"].get("locnet_lr_scale", 1.0) or 1.0)
        optim_cfg = dict(self.cfg["optim"])
        lr = float(optim_cfg["lr"])
        loc_ids = {id(p) for p in self.net.locnet_parameters()}
        groups = [{"params": [p for p in self.net.parameters() if id(p) not in loc_ids]}]
        if loc_ids:
            groups.append({"params": list(self.net.locnet_parameters()), "lr": lr * scale})
        optimizer = instantiate(optim_cfg)(groups)
        sched_cfg = self.cfg.get("scheduler")
        if not sched_cfg:
            return optimizer
        sched_cfg = dict(sched_cfg)
        interval = sched_cfg.pop("interval", "epoch")
        monitor = sched_cfg.pop("monitor", "val/acc")
        scheduler = instantiate(sched_cfg)(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": interval, "monitor": monitor}}
