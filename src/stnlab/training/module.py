"""The ``LightningModule``: one network, cross-entropy, torchmetrics accuracy, optimiser from config."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from stnlab.data.normalize import InputNormalizer
from stnlab.errors import StnlabError
from stnlab.perf import FiniteWatch


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


def build_module(cfg: dict) -> "STNModule":
    """The ``STNModule`` a resolved run config describes (what ``train.py`` fits and checkpoints rebuild)."""
    from stnlab.errors import ConfigError

    try:
        return STNModule(cfg)
    except ValueError as e:  # shape problems found while building the network
        raise ConfigError(f"{e}; change model.* or data.image_size") from None


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
        self.label_smoothing = float((cfg.get("loss") or {}).get("label_smoothing", 0.0))
        num_classes = cfg["model"].get("num_classes", 43)
        # validate_args=False: its input checks wait for the GPU at every step.
        self.train_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.train_loss = MeanMetric(nan_strategy="disable")  # its NaN check would wait for the GPU too
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc_best = MaxMetric()
        # NonFiniteLossError for a non-finite training loss, without a GPU sync per step (stnlab.perf).
        self.finite_watch = FiniteWatch(self._non_finite)

    @staticmethod
    def _non_finite(value: float, step: int, epoch: int) -> None:
        raise NonFiniteLossError(f"training loss became {value} at step {step} (epoch {epoch}); "
                                 "lower optim.lr or check the input data")

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
        self._eval_step(batch, "val", self.val_acc)

    def on_validation_epoch_end(self):
        if self.trainer.sanity_checking:
            return
        self.val_acc_best(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True)

    # Resuming (see stnlab.reliability): what Lightning's own checkpoint state leaves out.
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        best = float(self.val_acc_best.compute()) if self.val_acc_best.update_called else None
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            rng["torch.cuda"] = torch.cuda.get_rng_state_all()
        checkpoint["stnlab"] = {"val_acc_best": best, "rng": rng}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("stnlab") or {}
        if state.get("val_acc_best") is not None:  # torchmetrics states are not in the state_dict
            self.val_acc_best.update(torch.tensor(state["val_acc_best"]))
        self._rng_to_restore = state.get("rng")

    def on_train_batch_start(self, batch, batch_idx):
        # Restored at the first batch after resuming: the augmentation then draws as in an uninterrupted run.
        rng = getattr(self, "_rng_to_restore", None)
        if rng is not None:
            self._rng_to_restore = None
            torch.set_rng_state(rng["torch"])
            if rng.get("torch.cuda") and torch.cuda.is_available() and len(rng["torch.cuda"]) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(rng["torch.cuda"])

    def test_step(self, batch, batch_idx):
        return self._eval_step(batch, "test", self.test_acc)  # logits, for callbacks (evaluation.TestReport)

    def configure_optimizers(self):
        scale = float(self.cfg["model"].get("locnet_lr_scale", 1.0) or 1.0)
        optim_cfg = dict(self.cfg["optim"])
        lr = float(optim_cfg["lr"])
        sts = list(self.net.transformers.values())
        # The regression layer starts at the identity: weight decay would pull its bias towards
        # theta = 0 (a collapsed sampling grid), so it is exempt.
        regressors = [p for st in sts for p in st.regressor.parameters()]
        locnets = [p for st in sts for p in st.locnet.parameters()]
        st_ids = {id(p) for p in regressors + locnets}
        groups = [{"params": [p for p in self.net.parameters() if id(p) not in st_ids]}]
        if locnets:
            groups.append({"params": locnets, "lr": lr * scale})
            groups.append({"params": regressors, "lr": lr * scale, "weight_decay": 0.0})
        optimizer = instantiate(optim_cfg)(groups)
        sched_cfg = self.cfg.get("scheduler")
        if not sched_cfg:
            return optimizer
        sched_cfg = dict(sched_cfg)
        interval = sched_cfg.pop("interval", "epoch")
        monitor = sched_cfg.pop("monitor", "val/acc")
        # null placeholders of schedules that must know the run (OneCycleLR): the whole run's step
        # count, and each parameter group's own peak lr (so locnet_lr_scale carries over).
        run_kw = {}
        if "total_steps" in sched_cfg and sched_cfg["total_steps"] is None:
            run_kw["total_steps"] = int(self.trainer.estimated_stepping_batches)
        if "max_lr" in sched_cfg and sched_cfg["max_lr"] is None:
            run_kw["max_lr"] = [g["lr"] for g in optimizer.param_groups]
        scheduler = instantiate({k: v for k, v in sched_cfg.items() if k not in run_kw})(optimizer, **run_kw)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": interval, "monitor": monitor}}
