"""Seeing the STs: traces, panels, the W&B callback (images per epoch + GIF) and ``src/visualize.py``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from PIL import Image

from conftest import ROOT, TINY_TWO_ST, compose
from stnlab.tracking.runfile import read_run
from stnlab.training.checkpoints import CheckpointError
from stnlab.training.module import build_module
from stnlab.training.run import train
from stnlab.viz import border_points, panel_grid, trace_sts
from stnlab.viz.panels import OUTLINE, labelled_grid, panel, save_png
from stnlab.viz.visualize import spread_over_classes

SYNTH = ["data=synth", "data.num_train=48", "data.num_val=16", "data.num_test=0", "data.batch_size=16"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """Two epochs of a tiny two-ST network on synthetic data, with the ST panels callback and offline W&B."""
    run = tmp_path_factory.mktemp("viz") / "run"
    cfg = compose(
        SYNTH
        + TINY_TWO_ST
        + [
            f"run_dir={run}",
            "callbacks=[default,st_panels]",
            "callbacks.st_panels.n=4",
            "trainer.max_epochs=2",
            "trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false",
            "trainer.accelerator=cpu",
            "trainer.num_sanity_val_steps=0",
        ]
    )
    train(cfg)
    return run


@pytest.mark.e2e
def test_callback_logs_st_images_every_epoch_and_a_gif(trained_run):
    (wandb_dir,) = trained_run.glob("wandb/offline-run-*")
    record = read_run(wandb_dir)
    for st in ("input", "conv2"):
        rows = record.metric(f"st/{st}")
        assert len(rows) == 2 and all(r["_type"] == "images/separated" for r in rows), rows
        assert [r["captions"][0].split(":")[0] for r in rows] == ["epoch 0", "epoch 1"]
        (video,) = record.metric(f"st/{st}_evolution")
        assert video["_type"] == "video-file" and video["path"].endswith(".gif")
        assert video["path"] in record.files
        assert all(r["filenames"][0] in record.files for r in rows)
        gif = Image.open(trained_run / "st_panels" / f"{st}.gif")
        assert gif.n_frames == 2
        assert sorted(p.name for p in (trained_run / "st_panels" / st).glob("*.png")) == [
            "epoch_000.png",
            "epoch_001.png",
        ]


def _compose_visualize(overrides: list[str]):
    from stnlab.config import compose as compose_app

    return compose_app("visualize", overrides)


@pytest.mark.e2e
def test_visualize_cli_writes_a_panel_grid_per_st(trained_run, tmp_path):
    env = dict(os.environ, WANDB_MODE="offline")
    env.pop("HYDRA_FULL_ERROR", None)
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "src" / "visualize.py"),
            f"ckpt={trained_run / 'checkpoints' / 'last.ckpt'}",
            "n=4",
            "data=synth",
            "data.num_train=8",
            "data.num_val=8",
            "data.num_test=0",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    out = trained_run / "visualize"
    for st, where in (("input", "input ST"), ("conv2", "ST after conv block 2, drawn on the image")):
        img = Image.open(out / f"{st}.png")
        # 4 panels in a row, each [32x32 input x4 on a 32 px margin | output] and 6 px apart, under a title and
        # a legend, each over its class name.
        assert img.width == 4 * (192 + 2 + 128 + 6) and 192 + 40 < img.height < 192 + 120
        assert img.text["Title"] == f"ST '{st}' ({where}) of custom-two_st-affine-synth32-s1: 4 val images of 4 classes"
    assert str(out / "input.png") in res.stdout
    assert not list(tmp_path.iterdir())  # nothing written in the working directory


def test_visualize_per_image_and_data_from_the_checkpoint(trained_run, tmp_path):
    from stnlab.apps.visualize import visualize

    written = visualize(
        _compose_visualize(
            [f"ckpt={trained_run / 'checkpoints' / 'last.ckpt'}", "n=3", "per_image=true", f"out={tmp_path}"]
        )
    )
    names = sorted(str(p.relative_to(tmp_path)) for p in written)
    assert names == [
        "conv2.png",
        "conv2/000.png",
        "conv2/001.png",
        "conv2/002.png",
        "input.png",
        "input/000.png",
        "input/001.png",
        "input/002.png",
    ]


def test_visualize_rejects_a_missing_checkpoint_and_takes_a_run_folder(trained_run, tmp_path):
    from stnlab.apps.visualize import visualize

    with pytest.raises(CheckpointError, match="not found; pass ckpt= a run folder"):
        visualize(_compose_visualize([f"ckpt={tmp_path / 'none.ckpt'}"]))
    written = visualize(_compose_visualize([f"ckpt={trained_run}", "n=2", f"out={tmp_path / 'out'}"]))
    assert sorted(p.name for p in written) == ["conv2.png", "input.png"]


def test_images_are_spread_over_the_classes():
    labels = torch.arange(43).repeat_interleave(30)  # 43 classes of 30 images, in class order
    one_each = spread_over_classes(labels, 16)
    classes = labels[one_each]
    assert len(one_each) == 16 and len(classes.unique()) == 16 and classes[0] == 0 and classes[-1] == 42
    # More images than classes: every class once, then a second image of each, far from its first.
    both = spread_over_classes(labels[:90], 6)  # 3 classes
    assert labels[both].tolist() == [0, 1, 2, 0, 1, 2]
    assert (both[3:] - both[:3]).tolist() == [15, 15, 15]
    assert spread_over_classes(torch.zeros(4, dtype=torch.long), 10).tolist() == [0, 1, 2, 3]


def test_labelled_grid_has_a_title_legend_and_a_caption_per_panel(zooming_module, tmp_path):
    view = trace_sts(zooming_module, torch.zeros(3, 3, 32, 32, dtype=torch.uint8))[0]
    captions = ["14 stop", "42 end of no passing for vehicles over 3.5t", "0 speed limit 20"]
    grid = labelled_grid(view, captions, "ST 'input' of a run: 3 val images", "left: input; right: output", cols=2)
    assert grid.info["Title"] == "ST 'input' of a run: 3 val images"  # set on the image, before saving
    plain = panel_grid(view, cols=2, scale=4)
    assert grid.width >= plain.width and grid.height > plain.height + 40  # the text rows
    saved = Image.open(save_png(grid, tmp_path / "grid.png"))
    assert saved.size == grid.size and saved.text["Title"] == grid.info["Title"]
    rows = [y for y in range(grid.height) if any(grid.getpixel((x, y)) == (0, 0, 0) for x in range(0, 150))]
    assert rows and rows[0] < 16  # the title's black text at the top


def test_border_points_go_round_the_square_and_close():
    pts = border_points(4)
    assert pts.shape == (17, 2) and torch.equal(pts[0], pts[-1])
    assert (pts.abs().amax(1) == 1).all()


@pytest.fixture
def zooming_module():
    """An untrained two-ST network whose input ST zooms in by 2 on the centre; the conv2 ST is the identity."""
    module = build_module(OmegaConf.to_container(compose(SYNTH + TINY_TWO_ST + ["transform=affine"]), resolve=True))
    with torch.no_grad():
        module.net.transformers["input"].regressor.bias.copy_(torch.tensor([0.5, 0, 0, 0, 0.5, 0]))
    return module


def test_trace_maps_each_st_onto_the_input_image(zooming_module):
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    first, second = trace_sts(zooming_module, images)
    assert (first.name, first.position, second.name, second.position) == ("input", 0, "conv2", 2)
    assert torch.equal(first.inputs, images)
    torch.testing.assert_close(first.outline, 0.5 * border_points().expand(3, -1, -1))
    zoom = F.affine_grid(
        torch.tensor([[[0.5, 0, 0], [0, 0.5, 0]]]).expand(3, 2, 3), [3, 3, 32, 32], align_corners=False
    )
    expected = F.grid_sample(images.float(), zoom, align_corners=False).round().to(torch.uint8)
    assert (first.outputs.int() - expected.int()).abs().max() <= 1
    # The conv2 ST sees what the input ST produced; being the identity, it changes nothing.
    assert torch.equal(second.inputs, first.outputs) and torch.equal(second.outputs, first.outputs)
    torch.testing.assert_close(second.outline, border_points().expand(3, -1, -1), atol=1e-5, rtol=0)


def test_panel_outlines_the_sampled_region(zooming_module):
    images = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    view = trace_sts(zooming_module, images)[0]
    img = panel(view, 0, scale=4)
    px = img.load()
    m = 32  # margin: a quarter of the 128 px enlarged input
    # The region is the central half: its left edge at x = -0.5, i.e. 32 px into the 128 px image.
    assert px[m + 32, m + 64] == OUTLINE or px[m + 31, m + 64] == OUTLINE
    assert px[m + 64, m + 64] != OUTLINE and px[m + 2, m + 64] != OUTLINE
    assert panel_grid(view, cols=2, scale=4).size == (2 * img.width + 6, img.height)
