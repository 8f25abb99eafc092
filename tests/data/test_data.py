"""GTSRB archives, CSVs, ROI scaling, caching, track splits and normalisation."""

from __future__ import annotations

import zipfile

import pytest
import torch

from stnlab.data import archives
from stnlab.data.datamodule import GTSRBDataModule
from stnlab.data.gtsrb import Row, Split, cached, decode, parse_csv, read_train, scaled_roi, split_by_tracks
from stnlab.data.normalize import InputNormalizer, channel_stats
from stnlab.errors import DataError


def test_parse_official_csv():
    text = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n00002_00029.ppm;53;54;6;5;47;48;7\n"
    (row,) = parse_csv(text, "GT-00007.csv", "GTSRB/Final_Training/Images/00007/", need_label=True)
    assert row == Row("GTSRB/Final_Training/Images/00007/00002_00029.ppm", 53, 54, (6, 5, 47, 48), 7, 2)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;ClassId\na.ppm;1;1;0;0;0;0\n", "missing column(s) Roi.Y2"),
        ("Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\na.ppm;x;1;0;0;0;0;0\n", "line 2: malformed row"),
        (
            "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\na.ppm;9;9;0;0;5;5;43\n",
            "ClassId 43 outside 0..42",
        ),
    ],
)
def test_bad_csv_is_named(text, problem):
    with pytest.raises(DataError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        parse_csv(text, "GT-00000.csv", "", need_label=True)


def test_roi_is_scaled_to_the_actual_image():
    row = Row("x.ppm", width=64, height=48, roi=(8, 6, 55, 41), class_id=0, track=0)
    # The mirror re-saved the 64x48 original at 32x32: x scales by 1/2, y by 2/3.
    assert scaled_roi(row, 32, 32) == pytest.approx((4.0, 4.0, 28.0, 28.0))


def test_read_train_decodes_every_listed_image(gtsrb_mirror):
    split = read_train(gtsrb_mirror / "GTSRB_Final_Training_Images.zip", image_size=24, crop_roi=True)
    assert split.images.shape == (3 * 3 * 4, 3, 24, 24) and split.images.dtype == torch.uint8
    assert sorted(split.labels.unique().tolist()) == [0, 1, 2]
    assert len(split.tracks.unique()) == 9
    # Cropped to the ROI, the class colour fills the image: class 0 is red.
    red = split.images[split.labels == 0].float().mean(dim=(0, 2, 3))
    assert red[0] > 150 and red[1] < 100


def test_an_image_declaring_too_many_pixels_is_refused_before_decoding(tmp_path):
    """A few hundred KB of PNG declaring 9000x9000 would take 243 MB once decoded: its header alone refuses it."""
    import io

    from PIL import Image

    png = io.BytesIO()
    Image.new("L", (9000, 9000)).save(png, format="PNG")
    member = "GTSRB/Final_Training/Images/00000/00000_00000.png"
    with zipfile.ZipFile(tmp_path / "train.zip", "w") as zf:
        zf.writestr(member, png.getvalue())
    with zipfile.ZipFile(tmp_path / "train.zip") as zf, pytest.raises(DataError) as e:
        decode(zf, [Row(member, 9000, 9000, (0, 0, 8999, 8999), 0, 0)], 16, False, "train.zip")
    assert str(e.value) == (
        f"train.zip: unreadable image {member} (9000x9000 pixels, over the limit of 40 megapixels); replace the archive"
    )


def test_track_split_holds_out_whole_tracks():
    labels = torch.arange(4).repeat_interleave(30)
    tracks = labels * 100_000 + torch.arange(120) // 5  # 6 tracks of 5 frames per class
    split = Split(torch.zeros(120, 3, 2, 2, dtype=torch.uint8), labels, tracks)
    train_idx, val_idx = split_by_tracks(split, per_class=2, seed=3)
    train_tracks, val_tracks = set(tracks[train_idx].tolist()), set(tracks[val_idx].tolist())
    assert not train_tracks & val_tracks
    assert len(val_tracks) == 8 and len(train_idx) + len(val_idx) == 120
    assert set(labels[val_idx].tolist()) == {0, 1, 2, 3}
    again = split_by_tracks(split, per_class=2, seed=3)[1]
    assert torch.equal(again, val_idx)
    assert not torch.equal(split_by_tracks(split, per_class=2, seed=4)[1], val_idx)


def test_cache_is_reused_and_a_corrupt_cache_is_rebuilt(tmp_path):
    made = []

    def build():
        made.append(1)
        return Split(torch.full((2, 3, 4, 4), 7, dtype=torch.uint8), torch.tensor([0, 1]), torch.tensor([5, 6]))

    key = {"image_size": 4}
    first = cached(tmp_path, "train", key, build)
    second = cached(tmp_path, "train", key, build)
    assert len(made) == 1 and torch.equal(first.images, second.images)
    (cache_file,) = tmp_path.glob("train-*.pt")
    cache_file.write_bytes(cache_file.read_bytes()[:100])  # truncated by a crash or a bad copy
    cached(tmp_path, "train", key, build)
    assert len(made) == 2
    cached(tmp_path, "train", {"image_size": 5}, build)  # other options: other cache
    assert len(made) == 3 and len(list(tmp_path.glob("train-*.pt"))) == 2
    assert not list(tmp_path.glob("*.part"))


def test_channel_stats_and_normaliser():
    images = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8)
    mean, std = channel_stats(images, chunk=7)
    x = images.double() / 255
    assert torch.allclose(mean, x.mean(dim=(0, 2, 3)), atol=1e-9)
    assert torch.allclose(std, x.permute(1, 0, 2, 3).reshape(3, -1).std(dim=1, unbiased=False), atol=1e-9)
    norm = InputNormalizer(3, global_norm=True, local_norm=False)
    norm.set_stats(mean.float(), std.float())
    out = norm(images)
    assert torch.allclose(out.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(out.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-3)
    local = InputNormalizer(3, global_norm=True, local_norm=True)(images)
    assert local.shape == images.shape and torch.isfinite(local).all()


def test_per_image_standardisation_makes_a_dark_and_a_bright_copy_alike():
    """normalize=per_image: each image by its own mean and std, so a sign photographed at a tenth of the light
    reaches the network as the well-lit one does; a blank image stays finite (floored std)."""
    bright = torch.randint(60, 250, (1, 3, 16, 16), generator=torch.Generator().manual_seed(0)).float()
    dark = bright / 10
    norm = InputNormalizer(3, global_norm=False, local_norm=False, per_image=True)
    out = norm(torch.cat([bright, dark, torch.full_like(dark, 7)]))
    assert torch.allclose(out[0], out[1], atol=1e-4)
    assert out[0].mean().abs() < 1e-5 and out[0].std() == pytest.approx(1.0, abs=1e-4)
    assert torch.equal(out[2], torch.zeros_like(out[2]))
    with pytest.raises(ValueError, match="per_image=true replaces the global statistics"):
        InputNormalizer(3, global_norm=True, per_image=True)


def test_photometric_jitter_changes_gain_and_contrast_within_its_bounds():
    from stnlab.data.augment import RandomJitter

    torch.manual_seed(0)
    x = torch.full((256, 3, 8, 8), 100.0)
    x[:, :, :4] = 50.0
    out = RandomJitter(rotation=0, scale=(1, 1), translation=0, brightness=0.2, contrast=0.0)(x)
    gain = out.mean(dim=(1, 2, 3)) / x.mean(dim=(1, 2, 3))
    assert 0.8 - 1e-4 <= gain.min() < 0.85 and 1.15 < gain.max() <= 1.2 + 1e-4
    out = RandomJitter(rotation=0, scale=(1, 1), translation=0, brightness=0.0, contrast=0.3)(x)
    spread = out.std(dim=(1, 2, 3)) / x.std(dim=(1, 2, 3))
    assert torch.allclose(out.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), atol=1e-3)
    assert 0.7 - 1e-4 <= spread.min() < 0.75 and 1.25 < spread.max() <= 1.3 + 1e-4
    assert torch.equal(RandomJitter(rotation=0, scale=(1, 1), translation=0)(x), x)  # photometric off by default


@pytest.mark.parametrize("served", ["folder", "http"])
def test_datamodule_fetches_splits_and_caches(served, gtsrb_mirror, http_mirror, tmp_path):
    mirror = str(gtsrb_mirror) if served == "folder" else http_mirror
    dm = GTSRBDataModule(root=str(tmp_path), mirror=mirror, image_size=16, val_tracks_per_class=1)
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.train) == 3 * 2 * 4 and len(dm.val) == 3 * 1 * 4
    assert not set(dm.train.tracks.tolist()) & set(dm.val.tracks.tolist())
    assert dm.has_test and len(dm.test) == 12
    assert sorted(p.name for p in tmp_path.glob("*.zip")) == sorted(p.name for p in gtsrb_mirror.glob("*.zip"))
    assert not list(tmp_path.rglob("*.part"))
    images, labels = next(iter(dm.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape[1:] == (3, 16, 16) and labels.dtype == torch.int64
    # A second module on the same root starts from the cache, without decoding.
    again = GTSRBDataModule(root=str(tmp_path), mirror="/nonexistent", image_size=16)
    import stnlab.data.gtsrb as gtsrb

    def no_decoding(*a, **k):
        raise AssertionError("decoded again instead of using the cache")

    orig = gtsrb.decode
    gtsrb.decode = no_decoding
    try:
        again.setup("fit")
    finally:
        gtsrb.decode = orig
    assert torch.equal(again.train.images, dm.train.images)


def test_no_test_labels_skips_the_test_stage(tmp_path, caplog):
    from gtsrb_fixture import make_archives

    mirror = make_archives(tmp_path / "mirror", classes=2, tracks=2, frames=2, with_gt=False)
    dm = GTSRBDataModule(root=str(tmp_path / "root"), mirror=str(mirror), image_size=16)
    with caplog.at_level("WARNING"):
        dm.setup("fit")
    assert not dm.has_test
    assert sum("test stage is skipped" in r.message for r in caplog.records) == 1


def test_no_data_and_no_network_names_the_mirror_setting(tmp_path):
    dm = GTSRBDataModule(root=str(tmp_path), mirror=str(tmp_path / "empty"), image_size=16)
    with pytest.raises(DataError, match="data.mirror=DIR_OR_URL or the GTSRB_MIRROR"):
        dm.setup("fit")
    dm = GTSRBDataModule(
        root=str(tmp_path), mirror="http://127.0.0.1:9/", image_size=16, download_retries=2, download_timeout=2
    )
    with pytest.raises(DataError, match="cannot download .* after 2 tries.*GTSRB_MIRROR"):
        dm.setup("fit")
    assert not list(tmp_path.iterdir())


def test_truncated_archive_is_named_and_nothing_half_written_remains(gtsrb_mirror, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    data = (gtsrb_mirror / archives.TRAIN.filename).read_bytes()
    (bad / archives.TRAIN.filename).write_bytes(data[: len(data) // 2])
    root = tmp_path / "root"
    with pytest.raises(DataError, match="GTSRB_Final_Training_Images.zip.*truncated or corrupt zip"):
        archives.fetch(archives.TRAIN, root, str(bad))
    assert list(root.iterdir()) == []


def test_wrong_layout_is_named(tmp_path):
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    with zipfile.ZipFile(wrong / archives.TRAIN.filename, "w") as zf:
        zf.writestr("images/0001.ppm", b"P6\n1 1\n255\n\x00\x00\x00")
    with pytest.raises(DataError, match="not the official GTSRB layout"):
        archives.fetch(archives.TRAIN, tmp_path / "root", str(wrong))


def test_official_download_is_md5_checked(gtsrb_mirror, tmp_path):
    path = gtsrb_mirror / archives.TRAIN.filename
    with pytest.raises(DataError, match="MD5 .* != official"):
        archives.verify_archive(path, archives.TRAIN, md5=True)
    archives.verify_archive(path, archives.TRAIN, md5=False)
