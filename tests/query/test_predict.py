"""Query time: reading every input kind, ``src/predict.py`` on images, folders, tracks and videos, and its errors."""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import CONF, TINY_TWO_ST, run_script
from query_checkpoint import save_checkpoint, untrained
from stnlab.apps.predict import predict
from stnlab.data.gtsrb import Row, decode
from stnlab.errors import StnlabError
from stnlab.query.figures import COLOURS, LABEL_GREEN, TEXT
from stnlab.query.images import MIN_SIDE, InputError, decode_image, network_pixels, read_query


def _image(h: int, w: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    arr = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    return Image.fromarray(arr[..., 0] if channels == 1 else arr, mode)


def _write_video(path, frames: int, size=(48, 40)):
    import av

    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        c.start_encoding()  # the header, even for no frames
        for i in range(frames):
            c.mux(s.encode(av.VideoFrame.from_image(_image(size[1], size[0], seed=i))))
        c.mux(s.encode())
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_checkpoint(untrained(TINY_TWO_ST), tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


def _cfg(**keys):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="predict", overrides=[f"{k}={v}" for k, v in keys.items()])


def test_resize_is_the_data_loaders():
    """A new image reaches the network exactly as a GTSRB image of the same pixels does (no ROI crop)."""
    im = _image(37, 53)
    buf = io.BytesIO()
    im.save(buf, format="PPM")
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as zf:
        zf.writestr("a.ppm", buf.getvalue())
    with zipfile.ZipFile(zbuf) as zf:
        loader = decode(zf, [Row("a.ppm", 53, 37, (0, 0, 52, 36), 0, 0)], 32, False, "test")[0]
    assert torch.equal(network_pixels(decode_image(buf.getvalue(), "a.ppm"), 32), loader)


def test_every_input_kind_is_read(tmp_path, gtsrb_mirror):
    _image(40, 60).save(tmp_path / "rgb.png")
    _image(30, 20).save(tmp_path / "frame.ppm")
    _image(25, 33, "L").save(tmp_path / "grey.jpg")
    rgba = _image(20, 20, "RGBA")
    rgba.putalpha(0)  # fully transparent: whatever colour it stores, it is composited over black
    rgba.save(tmp_path / "clear.png")
    sizes = {"rgb.png": (60, 40), "frame.ppm": (20, 30), "grey.jpg": (33, 25), "clear.png": (20, 20)}
    for name, shape in sizes.items():
        q = read_query(tmp_path / name, 32, display_size=64)
        assert q.kind == "image" and q.pixels.shape == (1, 3, 32, 32) and q.pixels.dtype == torch.uint8
        assert max(q.frames[0].display.size) == 64 and q.frames[0].display.mode == "RGB"
        assert q.frames[0].display.size[0] / q.frames[0].display.size[1] == pytest.approx(shape[0] / shape[1], 0.05)
    assert read_query(tmp_path / "clear.png", 32).pixels.max() == 0
    grey = read_query(tmp_path / "grey.jpg", 32).pixels[0]
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])

    folder = read_query(tmp_path, 32)  # natural order; the three other images make it a set, not a track
    assert folder.kind == "folder" and [f.name for f in folder.frames] == sorted(sizes)

    track = tmp_path / "track"
    track.mkdir()
    for i in (10, 2, 1):
        _image(30 + i, 30 + i, seed=i).save(track / f"00007_{i:05d}.ppm")
    q = read_query(track, 48, max_frames=2)
    assert q.kind == "track" and q.is_sequence and [f.name for f in q.frames] == ["00007_00001.ppm", "00007_00002.ppm"]

    q = read_query(gtsrb_mirror / "GTSRB_Final_Training_Images.zip", 32, track="1/2")
    assert q.kind == "track" and [f.name for f in q.frames] == [f"00002_{i:05d}.ppm" for i in range(4)]

    q = read_query(_write_video(tmp_path / "clip.mp4", 6), 32, frame_step=2)
    assert q.kind == "video" and [f.name for f in q.frames] == ["frame_00000", "frame_00002", "frame_00004"]
    assert q.fps == pytest.approx(5.0) and q.pixels.shape == (3, 3, 32, 32)


def test_predict_image_writes_top_k_and_st_figure(ckpt, tmp_path):
    _image(40, 60).save(tmp_path / "sign.png")
    out = tmp_path / "out"
    payload = predict(_cfg(ckpt=ckpt, input=tmp_path / "sign.png", top_k=3, show_st=True, out=out, device="cpu"))
    from stnlab.training.checkpoints import load_module

    module = load_module(ckpt)
    pixels = network_pixels(Image.open(tmp_path / "sign.png").convert("RGB"), 32)[None]
    probs = module(pixels).softmax(1)[0]
    top = payload["items"][0]["top"]
    assert [t["class_id"] for t in top] == probs.topk(3).indices.tolist()
    assert [t["prob"] for t in top] == pytest.approx(probs.topk(3).values.tolist(), abs=1e-6)
    assert json.loads((out / "predictions.json").read_text()) == payload
    lines = (out / "predictions.csv").read_text().splitlines()
    assert lines[0].startswith("name,index,class_1,name_1,prob_1") and lines[1].startswith("sign.png,0,")
    fig = Image.open(out / "st" / "sign.png")
    assert fig.width > 3 * 192 and payload["figures"] == ["st/sign.png"]  # input + one panel per ST
    assert sorted(p.name for p in out.iterdir()) == ["predictions.csv", "predictions.json", "st"]  # no staging left


def test_predict_video_and_track_animate(ckpt, tmp_path):
    video = _write_video(tmp_path / "clip.mp4", 4)
    out = tmp_path / "video"
    payload = predict(_cfg(ckpt=ckpt, input=video, top_k=2, show_st=True, out=out, device="cpu", display_size=64))
    assert payload["kind"] == "video" and len(payload["items"]) == 4 and len(payload["sequence"]["top"]) == 2
    assert Image.open(out / "st.gif").n_frames == 4
    # Captions keep the PNG's colours in every GIF frame, however many colours the pictures take ("ST input"
    # in the outline's green, not the nearest photo colour).
    gif = Image.open(out / "st.gif")
    for i in range(gif.n_frames):
        gif.seek(i)
        colours = {c for _, c in gif.convert("RGB").getcolors(1 << 16)}
        assert {LABEL_GREEN, TEXT, COLOURS[1]} <= colours, i
    import av

    with av.open(str(out / "st.mp4")) as c:
        assert len(list(c.decode(video=0))) == 4
    track = tmp_path / "track"
    track.mkdir()
    for i in range(3):
        _image(30 + 4 * i, 28 + 4 * i, seed=i).save(track / f"00003_{i:05d}.ppm")
    payload = predict(_cfg(ckpt=ckpt, input=track, show_st=True, out=tmp_path / "track_out", device="cpu"))
    assert payload["kind"] == "track" and Image.open(tmp_path / "track_out" / "st.gif").n_frames == 3


def test_a_folder_with_an_unreadable_file_goes_on_and_counts_it(ckpt, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, name in enumerate(("a.png", "b.png", "c.png")):
        _image(30 + i, 34, seed=i).save(folder / name)
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    payload = predict(_cfg(ckpt=ckpt, input=folder, out=tmp_path / "out", device="cpu"))
    assert [item["name"] for item in payload["items"]] == ["a.png", "b.png", "c.png"]
    ((skipped),) = payload["skipped"]
    assert skipped["file"] == str(folder / "broken.png") and "not an image" in skipped["reason"]
    assert "skipped 1 of 4 files (unreadable" in capsys.readouterr().out
    with pytest.raises(InputError, match="broken.png is not an image"):
        predict(_cfg(ckpt=ckpt, input=folder, out=tmp_path / "stop", device="cpu", on_error="stop"))
    assert not (tmp_path / "stop").exists()
    with pytest.raises(StnlabError, match="on_error=later must be skip or stop"):
        predict(_cfg(ckpt=ckpt, input=folder, out=tmp_path / "bad", device="cpu", on_error="later"))
    for name in ("a.png", "b.png", "c.png"):
        (folder / name).unlink()
    with pytest.raises(InputError, match="none of the 1 images of .* is readable; first: .*broken.png"):
        predict(_cfg(ckpt=ckpt, input=folder, out=tmp_path / "none", device="cpu"))


def test_bad_inputs_are_one_line_errors_and_write_nothing(ckpt, tmp_path):
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    _image(1, 1).save(tmp_path / "dot.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 64)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    cases = [
        (dict(input=tmp_path / "junk.png"), "not an image in a format Pillow reads"),
        (dict(input=tmp_path / "dot.png"), f"1x1 pixels: too small, each side must be at least {MIN_SIDE}"),
        (dict(input=tmp_path / "empty"), "is a folder without images"),
        (dict(input=tmp_path / "bad.mp4"), "is not a readable video"),
        (dict(input=tmp_path / "nothere.png"), "does not exist"),
        (dict(input=tmp_path / "empty", track="3/1"), "no class folder 00003"),
        (dict(input=tmp_path / "dot.png", ckpt=foreign), "is not an stnlab checkpoint"),
        (dict(input=tmp_path / "dot.png", top_k=0), "top_k=0 must be an integer in 1..43"),
    ]
    for keys, message in cases:
        cfg = _cfg(**{"ckpt": ckpt, "out": tmp_path / "out", "device": "cpu", **keys})
        with pytest.raises(StnlabError, match=message) as e:
            predict(cfg)
        assert "\n" not in str(e.value)
        assert not (tmp_path / "out").exists()
    with pytest.raises(InputError, match="holds no video frames"):
        read_query(_write_video(tmp_path / "none.mp4", 0), 32)


@pytest.mark.e2e
def test_cli_prints_one_line_and_help_lists_keys(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.ckpt")
    res = run_script("predict.py", f"ckpt={tmp_path / 'foreign.ckpt'}", f"input={tmp_path}", cwd=tmp_path, timeout=120)
    assert res.returncode == 2, res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("stnlab: error:")]
    assert len(errors) == 1 and "is not an stnlab checkpoint" in errors[0] and "Traceback" not in res.stderr
    assert not list(tmp_path.glob("outputs"))
    res = run_script("predict.py", "--help", cwd=tmp_path, timeout=120)
    assert res.returncode == 0
    for key in ("ckpt=", "input=", "track=", "top_k=", "out=", "show_st=", "device=", "batch_size="):
        assert key in res.stdout


def test_fifos_devices_and_oversized_images_are_refused_before_reading(ckpt, tmp_path):
    """A FIFO would block the read forever and a device never end; an image is refused on its header's size,
    before its pixels are decoded (a 9000x9000 PNG of a few hundred KB would take 243 MB)."""
    os.mkfifo(tmp_path / "pipe.png")
    Image.new("L", (9000, 9000)).save(tmp_path / "huge.png")
    cases = [
        (tmp_path / "pipe.png", f"input={tmp_path / 'pipe.png'} is not a regular file or folder"),
        ("/dev/null", "input=/dev/null is not a regular file or folder"),
        (tmp_path / "huge.png", "huge.png is 9000x9000 pixels, over the limit of 40 megapixels"),
    ]
    for source, message in cases:
        with pytest.raises(InputError, match=message):
            predict(_cfg(ckpt=ckpt, input=source, out=tmp_path / "out", device="cpu"))
        assert not (tmp_path / "out").exists()
    # A copy of every frame is kept at display_size: an unchecked 100000 would allocate 30 GB per frame.
    with pytest.raises(StnlabError, match="display_size=1025: expected at most 1024 pixels"):
        predict(_cfg(ckpt=ckpt, input=tmp_path / "huge.png", out=tmp_path / "out", device="cpu", display_size=1025))


def test_top_k_beyond_the_checkpoints_classes_is_one_line(tmp_path):
    three = save_checkpoint(untrained([*TINY_TWO_ST, "data.num_classes=3"]), tmp_path / "three.ckpt")
    _image(40, 40).save(tmp_path / "sign.png")
    with pytest.raises(StnlabError, match=rf"top_k=5 must be an integer in 1..3 \({three} tells 3 classes apart\)"):
        predict(_cfg(ckpt=three, input=tmp_path / "sign.png", out=tmp_path / "out", device="cpu"))
    payload = predict(_cfg(ckpt=three, input=tmp_path / "sign.png", out=tmp_path / "out", device="cpu", top_k=3))
    assert sorted(g["class_id"] for g in payload["items"][0]["top"]) == [0, 1, 2]
