"""The decoded GTSRB cache (stnlab.data.gtsrb): tampered, stale, deleted or unwritable caches, and processes that
build one cache at once or die holding its lock."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import ROOT
from stnlab.data.gtsrb import Split, _checksum, cached


def _split(seed: int = 0) -> Split:
    g = torch.Generator().manual_seed(seed)
    return Split(
        torch.randint(0, 256, (6, 3, 4, 4), dtype=torch.uint8, generator=g), torch.arange(6) % 3, torch.arange(6)
    )


def test_tampered_cache_with_a_matching_key_is_rebuilt(tmp_path):
    made = []

    def build():
        made.append(1)
        return _split()

    key = {"archives": "abc", "image_size": 4}
    good = cached(tmp_path, "train", key, build)
    (path,) = tmp_path.glob("train-*.pt")
    blob = torch.load(path, weights_only=True)
    # Swap two pixel values: same sums, same key, same shapes; only a digest of the bytes sees it.
    images = blob["images"].clone().view(-1)
    i, j = next((i, j) for i in range(len(images)) for j in range(i + 1, len(images)) if images[i] != images[j])
    images[i], images[j] = images[j].clone(), images[i].clone()
    torch.save(dict(blob, images=images.view_as(blob["images"])), path)
    again = cached(tmp_path, "train", key, build)
    assert len(made) == 2 and torch.equal(again.images, good.images)
    # A file at the right name holding another key's data (copied by hand) is not trusted either.
    other = _split(seed=1)
    torch.save(dict(vars(other), key='{"archives": "xyz"}', checksum=_checksum(other)), path)
    assert torch.equal(cached(tmp_path, "train", key, build).images, good.images) and len(made) == 3


def test_stale_part_files_of_a_killed_writer_are_cleared(tmp_path):
    key = {"image_size": 4}
    cached(tmp_path, "train", key, _split)
    (path,) = tmp_path.glob("train-*.pt")
    stale = tmp_path / f".{path.name}.deadbeef.part"
    stale.write_bytes(b"half a tensor")
    path.unlink()  # the writer died before its rename
    cached(tmp_path, "train", key, _split)
    assert path.is_file() and not stale.exists()


def _split_of(n: int) -> Split:
    return Split(torch.zeros(n, 3, 16, 16, dtype=torch.uint8), torch.arange(n) % 3, torch.arange(n))


def test_cache_folder_deleted_during_the_decode_is_made_again(tmp_path):
    cache_dir = tmp_path / "cache"

    def build():
        shutil.rmtree(cache_dir)  # someone cleans data.root while we decode
        return _split_of(4)

    assert len(cached(cache_dir, "train", {"k": 1}, build)) == 4
    assert len(list(cache_dir.glob("train-*.pt"))) == 1 and not list(cache_dir.glob("*.part"))


# Run in a fresh interpreter, not a fork: a child forked after torch's OpenMP pool started can hang.
_FULL_DISK = """
import resource, signal, sys
from pathlib import Path
import torch
from stnlab.data.gtsrb import Split, cached
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
n = 64  # ~50 kB: does not fit
split = cached(Path(sys.argv[1]), "train", {"k": 1},
               lambda: Split(torch.zeros(n, 3, 16, 16, dtype=torch.uint8), torch.arange(n) % 3, torch.arange(n)))
Path(sys.argv[2]).write_text(str(len(split)))
"""


@pytest.mark.e2e
@pytest.mark.parametrize("problem", ["full_disk", "cache_is_a_file"])
def test_unwritable_cache_warns_and_the_data_is_still_used(problem, tmp_path, caplog):
    cache_dir = tmp_path / "cache"
    if problem == "full_disk":
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        done = subprocess.run(
            [sys.executable, "-c", _FULL_DISK, str(cache_dir), str(tmp_path / "n")],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0 and (tmp_path / "n").read_text() == "64", done.stderr[-2000:]
    else:  # a data.root where the cache cannot go (read-only, or its cache/ taken by a file)
        cache_dir.write_text("not a folder")
        with caplog.at_level("WARNING"):
            assert len(cached(cache_dir, "train", {"k": 1}, lambda: _split_of(64))) == 64
        assert any("without caching" in r.getMessage() for r in caplog.records)
    assert not list(tmp_path.rglob("*.part")) and not list(tmp_path.rglob("*.pt"))


def _build_cache(cache_dir: str, counter: str, barrier, results) -> None:
    from stnlab.data.gtsrb import Split, cached

    def build():
        with open(counter, "a") as f:
            f.write("decode\n")
        time.sleep(1.0)  # a slow decode: the other process arrives meanwhile
        g = torch.Generator().manual_seed(0)
        return Split(
            torch.randint(0, 256, (50, 3, 16, 16), dtype=torch.uint8, generator=g),
            torch.arange(50) % 43,
            torch.arange(50),
        )

    barrier.wait()
    split = cached(Path(cache_dir), "train", {"image_size": 16}, build)
    results.put(hashlib.sha1(split.images.numpy().tobytes()).hexdigest())


@pytest.mark.timeout(120)
def test_two_processes_building_one_cache_decode_once(tmp_path):
    ctx = mp.get_context("fork")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    counter = tmp_path / "decodes.txt"
    procs = [
        ctx.Process(target=_build_cache, args=(str(tmp_path / "cache"), str(counter), barrier, results))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    digests = [results.get(timeout=90) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert counter.read_text().count("decode") == 1  # the second waited on the lock, then read the cache
    assert digests[0] == digests[1]
    assert len(list((tmp_path / "cache").glob("train-*.pt"))) == 1 and not list((tmp_path / "cache").glob("*.part"))


def _hold_lock_and_die(cache_dir: str) -> None:
    from stnlab.data.gtsrb import cached

    def build():
        os.kill(os.getpid(), signal.SIGKILL)  # killed while decoding, holding the lock

    cached(Path(cache_dir), "train", {"image_size": 16}, build)


@pytest.mark.timeout(60)
def test_a_writer_killed_while_holding_the_lock_does_not_block_the_next(tmp_path):
    from stnlab.data.gtsrb import Split, cached

    p = mp.get_context("fork").Process(target=_hold_lock_and_die, args=(str(tmp_path),))
    p.start()
    p.join(30)
    assert p.exitcode == -signal.SIGKILL
    split = cached(
        tmp_path,
        "train",
        {"image_size": 16},
        lambda: Split(torch.zeros(2, 3, 1, 1, dtype=torch.uint8), torch.tensor([0, 1]), torch.tensor([0, 1])),
    )
    assert len(split) == 2
