"""The GTSRB archives (stnlab.data.archives): corrupt members, bad CSVs and images, archives off the official
structure, a misbehaving mirror, a full disk: one DataError line each, nothing half-made left behind."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import warnings
import zipfile
from pathlib import Path

import pytest
import torch

from stnlab.data import archives
from stnlab.data.datamodule import GTSRBDataModule
from stnlab.errors import DataError

TRAIN_ZIP = archives.TRAIN.filename


CSV_1 = "GTSRB/Final_Training/Images/00001/GT-00001.csv"


IMAGE_1 = "GTSRB/Final_Training/Images/00001/00000_00001.ppm"


def rewrite_zip(src: Path, dst: Path, replace: dict[str, bytes | None], stored: bool = False) -> Path:
    """Copy the zip ``src`` to ``dst`` with members replaced (``None``: dropped)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    method = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", method) as zout:
        for info in zin.infolist():
            data = replace.get(info.filename, zin.read(info.filename))
            if data is not None:
                zout.writestr(info.filename, data)
    return dst


def flip_byte_in_member(path: Path, member: str, where: float) -> None:
    """Corrupt one byte of ``member``'s data in place (its local header and the central directory stay valid)."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    raw = bytearray(path.read_bytes())
    name_len, extra_len = (
        int.from_bytes(raw[info.header_offset + 26 :][:2], "little"),
        int.from_bytes(raw[info.header_offset + 28 :][:2], "little"),
    )
    start = info.header_offset + 30 + name_len + extra_len
    raw[start + int(info.compress_size * where)] ^= 0xFF
    path.write_bytes(bytes(raw))


def mirror_with(tmp_path: Path, gtsrb_mirror: Path, replace: dict[str, bytes | None], stored: bool = False) -> Path:
    mirror = tmp_path / "mirror"
    rewrite_zip(gtsrb_mirror / TRAIN_ZIP, mirror / TRAIN_ZIP, replace, stored)
    return mirror


@pytest.mark.parametrize(
    "stored, where, problem",
    [
        (True, 0.5, "corrupt member GTSRB/Final_Training/Images/00001/00000_00001.ppm"),  # CRC-32 mismatch
        (False, 0.0, "unreadable zip .*decompress"),  # a broken deflate stream (was a zlib.error traceback)
    ],
)
def test_corrupt_member_is_named_and_never_kept(stored, where, problem, gtsrb_mirror, tmp_path):
    mirror = mirror_with(tmp_path, gtsrb_mirror, {}, stored=stored)
    flip_byte_in_member(mirror / TRAIN_ZIP, IMAGE_1, where)
    root = tmp_path / "root"
    with pytest.raises(DataError, match=f"{TRAIN_ZIP}: {problem}.*replace the archive"):
        archives.fetch(archives.TRAIN, root, str(mirror))
    assert list(root.iterdir()) == []  # neither the archive nor a *.part
    # The same rot in an archive already fetched is caught too, by the check on every use.
    (root / TRAIN_ZIP).write_bytes((mirror / TRAIN_ZIP).read_bytes())
    with pytest.raises(DataError, match=problem):
        archives.fetch(archives.TRAIN, root, str(gtsrb_mirror))


def _csv_1(gtsrb_mirror: Path) -> str:
    with zipfile.ZipFile(gtsrb_mirror / TRAIN_ZIP) as zf:
        return zf.read(CSV_1).decode()


@pytest.mark.parametrize(
    "case, problem",
    [
        ("label", r"GT-00001.csv, line 3: ClassId 99 outside 0..42; fix or replace the CSV"),
        ("short_row", r"GT-00001.csv, line 3: malformed row"),
        ("roi", r"GT-00001.csv, line 3: ROI .* inverted"),
        ("latin1", r"GT-00001.csv: not UTF-8 text"),
        ("no_classid", r"missing column\(s\) ClassId; the CSV must have the official header"),
        ("missing_image", r"image GTSRB/Final_Training/Images/00001/00000_00001.ppm listed in the CSV is missing"),
        ("garbage_image", r"unreadable image GTSRB/Final_Training/Images/00001/00000_00001.ppm .*replace the archive"),
    ],
)
def test_bad_csv_or_image_in_a_valid_archive(case, problem, gtsrb_mirror, tmp_path):
    lines = _csv_1(gtsrb_mirror).splitlines()
    fields = lines[2].split(";")
    replace: dict[str, bytes | None] = {}
    if case == "label":
        lines[2] = ";".join(fields[:-1] + ["99"])
    elif case == "short_row":
        lines[2] = ";".join(fields[:4])
    elif case == "roi":
        fields[3], fields[5] = fields[5], fields[3]  # X1 > X2
        lines[2] = ";".join(fields)
    elif case == "no_classid":
        lines = [";".join(line.split(";")[:-1]) for line in lines]
    elif case == "missing_image":
        replace[IMAGE_1] = None
    elif case == "garbage_image":
        replace[IMAGE_1] = b"P6\n40 40\n255\n\x00\x01"  # a truncated PPM
    text = ("\n".join(lines) + "\n").encode()
    if case == "latin1":
        text = text.replace(b"00000_00001", b"00000_0000\xe91", 1)
    replace.setdefault(CSV_1, text)
    mirror = mirror_with(tmp_path, gtsrb_mirror, replace)
    dm = GTSRBDataModule(root=str(tmp_path / "root"), mirror=str(mirror), image_size=16)
    with pytest.raises(DataError, match=problem):
        dm.setup("fit")
    assert not list((tmp_path / "root").rglob("*.pt")) and not list((tmp_path / "root").rglob("*.part"))


def test_replaced_archive_gets_a_new_cache(gtsrb_mirror, tmp_path):
    from gtsrb_fixture import make_archives

    root = tmp_path / "root"
    first = GTSRBDataModule(root=str(root), mirror=str(gtsrb_mirror), image_size=16)
    first.setup("fit")
    # The archive in data.root is replaced by another (same layout, other images): the old cache is not used.
    other = make_archives(tmp_path / "other", seed=7)
    (root / TRAIN_ZIP).write_bytes((other / TRAIN_ZIP).read_bytes())
    second = GTSRBDataModule(root=str(root), mirror=str(other), image_size=16)
    second.setup("fit")
    assert not torch.equal(second.train.images, first.train.images)
    assert len(list((root / "cache").glob("train-*.pt"))) == 2


class _BadServer:
    """A TCP server on 127.0.0.1 that misbehaves the same way on every connection, counting them."""

    def __init__(self, behaviour: str):
        self.behaviour, self.connections = behaviour, 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.recv(4096)
            if self.behaviour == "hang":  # accepts, reads the request, never answers
                self.held.append(conn)
                continue
            if self.behaviour == "truncate":  # promises 100000 bytes, sends 10, hangs up
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"PK\x03\x04" + b"\0" * 6)
            else:  # a failing server
                conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
            conn.close()

    def close(self):
        self.sock.close()
        for c in self.held:
            c.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("behaviour", ["hang", "truncate", "fail"])
def test_misbehaving_mirror_is_retried_a_bounded_number_of_times(behaviour, tmp_path):
    server = _BadServer(behaviour)
    root = tmp_path / "root"
    start = time.monotonic()
    try:
        with pytest.raises(DataError, match=f"cannot download {server.url}{TRAIN_ZIP} after 2 tries.*GTSRB_MIRROR"):
            archives.fetch(archives.TRAIN, root, server.url, timeout=0.5, retries=2)
    finally:
        server.close()
    assert time.monotonic() - start < 20  # 2 tries x 0.5 s timeout + one 2 s pause, not a hang
    assert server.connections == 2
    assert list(root.iterdir()) == []  # no half-downloaded archive under any name


IMAGES = "GTSRB/Final_Training/Images/"


def _members(gtsrb_mirror: Path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(gtsrb_mirror / TRAIN_ZIP) as zf:
        return [(i.filename, zf.read(i.filename)) for i in zf.infolist()]


def _structure_case(case: str, members: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The tiny archive (classes 00000-00002) changed the way a bad copy or a hand-made zip differs."""

    def in_class(name: str, *classes: int) -> bool:
        return any(name.startswith(f"{IMAGES}{c:05d}/") for c in classes)

    def csv_rows(data: bytes, edit) -> bytes:
        lines = data.decode().splitlines()
        return ("\n".join(edit(lines)) + "\n").encode()

    if case == "only_class_0":
        return [(n, d) for n, d in members if not in_class(n, 1, 2)]
    if case == "gap":
        return [(n, d) for n, d in members if not in_class(n, 1)]
    if case == "no_csv":
        return [(n, d) for n, d in members if n != f"{IMAGES}00002/GT-00002.csv"]
    if case == "lowercase_folders":  # class 2 under another capitalisation
        return [(n.replace(IMAGES, IMAGES.lower()) if in_class(n, 2) else n, d) for n, d in members]
    if case == "mixed_case_images":
        return [(n.replace("/Images/", "/images/") if in_class(n, 1) else n, d) for n, d in members]
    if case == "stray_folder":
        return members + [(f"{IMAGES}extra/00000_00000.ppm", members[0][1])]
    if case == "duplicated_csv":  # the same member twice: its rows would count twice
        return members + [(CSV_1, dict(members)[CSV_1])]
    if case == "classid_vs_folder":
        return [
            (n, csv_rows(d, lambda ls: ls[:2] + [ls[2].rsplit(";", 1)[0] + ";2"] + ls[3:]) if n == CSV_1 else d)
            for n, d in members
        ]
    if case == "row_twice":
        return [(n, csv_rows(d, lambda ls: ls + [ls[1]]) if n == CSV_1 else d) for n, d in members]
    if case == "header_only":
        return [(n, csv_rows(d, lambda ls: ls[:1]) if n.endswith(".csv") else d) for n, d in members]
    if case == "huge_field":  # an unterminated quote swallowing the rest: past the csv module's field limit
        return [(n, d.replace(b"\n", b'\n"' + b"x" * 200_000, 1) if n == CSV_1 else d) for n, d in members]
    if case == "decompression_bomb":  # a PPM whose header claims 100000x100000 pixels
        return [(n, b"P6\n100000 100000\n255\n" + b"\0" * 64 if n == IMAGE_1 else d) for n, d in members]
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case, problem",
    [
        ("only_class_0", "holds only class folder 00000 .*replace the archive with the official one"),
        ("gap", r"class folder\(s\) 00001 missing \(the official archive has 00000 to 00042\)"),
        ("no_csv", "class folder 00002 has no GT-00002.csv"),
        (
            "lowercase_folders",
            "member gtsrb/final_training/images/00002/.* is not under GTSRB/Final_Training/Images/ "
            "as capitalised officially",
        ),
        ("mixed_case_images", "member GTSRB/Final_Training/images/00001/.* as capitalised officially"),
        ("stray_folder", "unexpected member GTSRB/Final_Training/Images/extra/00000_00000.ppm"),
        ("duplicated_csv", "member GTSRB/Final_Training/Images/00001/GT-00001.csv appears twice"),
        ("classid_vs_folder", "GT-00001.csv, line 3: ClassId 2 disagrees with its folder 00001"),
        ("row_twice", r"GT-00001.csv, line \d+: 00000_00000.ppm is listed twice"),
        ("header_only", r"every GT-\*.csv lists no image \(header only\)"),
        ("huge_field", "GT-00001.csv: unreadable CSV .*field larger than field limit"),
        ("decompression_bomb", f"unreadable image {IMAGE_1} \\(10000 megapixels, over the limit of 40 megapixels\\)"),
    ],
)
def test_archive_off_the_official_structure_is_one_line_and_nothing_cached(case, problem, gtsrb_mirror, tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile: "Duplicate name"
        with zipfile.ZipFile(mirror / TRAIN_ZIP, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in _structure_case(case, _members(gtsrb_mirror)):
                zf.writestr(name, data)
    root = tmp_path / "root"
    dm = GTSRBDataModule(root=str(root), mirror=str(mirror), image_size=16)
    with pytest.raises(DataError, match=problem) as err:
        dm.setup("fit")
    assert "\n" not in str(err.value)
    assert not list(root.rglob("*.pt")) and not list(root.rglob("*.part"))


def test_training_archive_missing_a_class_of_the_test_set_is_refused(gtsrb_mirror, tmp_path):
    # Classes 00000-00001 of 3: structurally sound, but the test ground truth has class 2 too.
    mirror = tmp_path / "mirror"
    rewrite_zip(
        gtsrb_mirror / TRAIN_ZIP,
        mirror / TRAIN_ZIP,
        {n: None for n, _ in _members(gtsrb_mirror) if n.startswith(f"{IMAGES}00002/")},
    )
    for other in (archives.TEST.filename, archives.TEST_GT.filename):
        shutil.copy(gtsrb_mirror / other, mirror / other)
    root = tmp_path / "root"
    with pytest.raises(
        DataError,
        match=r"lacks class folder\(s\) 00002 that the test ground truth "
        "GTSRB_Final_Test_GT.zip has",
    ):
        GTSRBDataModule(root=str(root), mirror=str(mirror), image_size=16).setup("fit")
    assert not list(root.rglob("*.pt"))


@pytest.mark.parametrize("line_end", ["\r", "\r\n"])
def test_csvs_with_cr_or_crlf_line_ends_read_like_lf(line_end, gtsrb_mirror, tmp_path):
    members = _members(gtsrb_mirror)
    mirror = tmp_path / "mirror"
    rewrite_zip(
        gtsrb_mirror / TRAIN_ZIP,
        mirror / TRAIN_ZIP,
        {n: d.replace(b"\n", line_end.encode()) for n, d in members if n.endswith(".csv")},
    )
    dm = GTSRBDataModule(root=str(tmp_path / "root"), mirror=str(mirror), image_size=16)
    dm.setup("fit")
    ref = GTSRBDataModule(root=str(tmp_path / "ref"), mirror=str(gtsrb_mirror), image_size=16)
    ref.setup("fit")
    assert torch.equal(dm.train.images, ref.train.images) and torch.equal(dm.train.labels, ref.train.labels)


def test_a_killed_copys_part_file_is_cleared_and_files_get_the_umasks_mode(gtsrb_mirror, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    stale = root / f".{TRAIN_ZIP}.k1ll3d.part"
    stale.write_bytes(b"PK\x03\x04" + b"\0" * 1000)  # what a copy killed half-way leaves
    old = os.umask(0o022)
    try:
        dm = GTSRBDataModule(root=str(root), mirror=str(gtsrb_mirror), image_size=16)
        dm.setup("fit")
    finally:
        os.umask(old)
    assert not stale.exists() and not list(root.rglob("*.part"))
    made = [*root.glob("*.zip"), *root.glob("cache/*.pt")]
    assert len(made) == 3 + 2  # three archives, the train and test caches
    assert {oct(p.stat().st_mode & 0o777) for p in made} == {oct(0o644)}  # not mkstemp's 0600


def _fetch_on_a_full_disk(root: str, mirror: str, out: str) -> None:
    import resource
    import signal as sig

    sig.signal(sig.SIGXFSZ, sig.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    try:
        archives.fetch(archives.TRAIN, Path(root), mirror)
        Path(out).write_text("fetched")
    except DataError as e:
        Path(out).write_text(str(e))


def test_full_disk_under_data_root_is_one_line_and_leaves_no_part(gtsrb_mirror, tmp_path):
    import multiprocessing as mp

    root = tmp_path / "root"
    p = mp.get_context("fork").Process(
        target=_fetch_on_a_full_disk, args=(str(root), str(gtsrb_mirror), str(tmp_path / "out"))
    )
    p.start()
    p.join(60)
    message = (tmp_path / "out").read_text()
    assert p.exitcode == 0 and message.startswith(f"cannot copy {TRAIN_ZIP} into {root} (File too large); free space")
    assert list(root.iterdir()) == []
