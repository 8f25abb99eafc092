"""Class names and their count come from the checkpoint: predict, serve, export and the reports name the classes
the run's data named (old checkpoints: GTSRB's names for 43 classes, else ``class <id>``)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from conftest import TINY_SYNTH, TINY_TWO_ST, compose
from query_checkpoint import save_checkpoint, untrained
from stnlab.data.classes import GTSRB_CLASSES
from stnlab.data.synth import CLASS_NAMES
from stnlab.errors import StnlabError
from stnlab.training.checkpoints import CheckpointConfig, config_of, load_module

FIVE_SYNTH_CLASSES = [*TINY_SYNTH, "data.num_classes=5", "++callbacks.test_report=null"]


@pytest.fixture(scope="module")
def five_class_run(tmp_path_factory):
    from stnlab.training.run import train

    run_dir = tmp_path_factory.mktemp("five") / "run"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(compose([*FIVE_SYNTH_CLASSES, f"run_dir={run_dir}"]))
    finally:
        torch.set_num_threads(before)
    return run_dir


def test_a_trained_checkpoint_carries_its_datas_class_names(five_class_run):
    (ckpt,) = (five_class_run / "checkpoints").glob("best-*.ckpt")
    info = config_of(load_module(ckpt))
    assert (info.num_classes, info.class_names) == (5, CLASS_NAMES[:5])
    assert (info.model, info.data, info.image_size, info.crop_roi) == ("no_st", "synth", 16, False)


def test_predict_names_and_counts_the_checkpoints_classes(five_class_run, tmp_path):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from conftest import CONF
    from stnlab.apps.predict import predict

    Image.new("RGB", (24, 24), (30, 60, 200)).save(tmp_path / "sign.png")

    def cfg(**keys):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return hydra_compose("predict", [f"{k}={v}" for k, v in keys.items()])

    base = dict(ckpt=five_class_run, input=tmp_path / "sign.png", out=tmp_path / "out", device="cpu")
    payload = predict(cfg(**base, top_k=5))
    top = payload["items"][0]["top"]
    assert sorted(g["class_id"] for g in top) == [0, 1, 2, 3, 4]
    assert all(g["name"] == CLASS_NAMES[g["class_id"]] for g in top)
    with pytest.raises(StnlabError, match="top_k=6 must be an integer in 1..5"):
        predict(cfg(**base, top_k=6))


def test_serve_and_export_take_the_checkpoints_classes(five_class_run):
    from stnlab.query.classifier import ImageClassifier
    from stnlab.query.server import build_server

    classifier = ImageClassifier.of(load_module(five_class_run / "checkpoints" / "last.ckpt"))
    assert classifier.class_names == list(CLASS_NAMES[:5])  # export's sidecar lists these
    with pytest.raises(StnlabError, match=r"top_k=6 must be an integer in 1..5"):
        build_server(str(five_class_run / "checkpoints" / "last.ckpt"), 6, 1.0, torch.device("cpu"))


def test_checkpoints_without_saved_names_fall_back(tmp_path):
    three = load_module(save_checkpoint(untrained([*TINY_TWO_ST, "data.num_classes=3"]), tmp_path / "three.ckpt"))
    assert config_of(three).class_names == ("class 0", "class 1", "class 2")
    gtsrb = load_module(save_checkpoint(untrained(["model=no_st"]), tmp_path / "gtsrb.ckpt"))
    assert config_of(gtsrb).class_names == GTSRB_CLASSES
    # Names that do not fit the count (an edited file) are not used.
    assert CheckpointConfig.of({"data": {"image_size": 32, "num_classes": 3}}, ["a", "b"]).class_names[2] == "class 2"
