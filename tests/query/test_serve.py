"""``src/serve.py`` over real HTTP: a good upload, bad ones (4xx with a clear message), and a good one after them."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import requests
import torch
from PIL import Image

from conftest import ROOT, TINY_TWO_ST
from query_checkpoint import save_checkpoint, untrained

STARTUP_S = 90  # two fresh interpreters import torch on a shared CPU


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ppm(h: int = 40, w: int = 50) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, format="PPM")
    return buf.getvalue()


@pytest.fixture
def server(tmp_path):
    """``src/serve.py`` on a free port in its own process group; killed however the test ends."""
    ckpt = save_checkpoint(untrained(TINY_TWO_ST), tmp_path / "tiny.ckpt")
    port = _free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    log = open(tmp_path / "server.log", "w+")
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "src" / "serve.py"),
            f"ckpt={ckpt}",
            f"port={port}",
            "top_k=3",
            "max_upload_mb=1",
            "device=cpu",
        ],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if requests.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "server not ready: " + (tmp_path / "server.log").read_text()
            time.sleep(0.3)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)  # serve.py stops LitServe's workers on SIGTERM
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of its process group
        except ProcessLookupError:
            pass
        proc.wait()
        log.close()
    assert not list(tmp_path.glob("client.py"))  # LitServe's client generator is off


@pytest.mark.e2e
def test_round_trip_and_bad_uploads(server):
    good = _ppm()
    answer = requests.post(f"{server}/predict", files={"file": ("sign.ppm", good)}, timeout=30)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [set(t) for t in body["top"]] == [{"class_id", "name", "prob"}] * 3
    probs = [t["prob"] for t in body["top"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1
    assert body["image_size"] == 32 and body["input_size"] == [50, 40] and body["model"] == "two_st"

    bad = [
        (dict(files={"file": ("notes.txt", b"this is not an image")}), 400, "not an image in a format Pillow reads"),
        (dict(files={"file": ("empty.png", b"")}), 400, "is empty (0 bytes)"),
        (dict(files={"file": ("dot.ppm", _ppm(1, 1))}), 400, "too small, each side must be at least"),
        (dict(files={"other": ("sign.ppm", good)}), 400, "no file in form field 'file'"),
        (dict(data=good, headers={"Content-Type": "application/octet-stream"}), 415, "expected a multipart upload"),
        (dict(files={"file": ("huge.ppm", b"P6 " + b"\0" * (2 << 20))}), 413, "over the limit of 1048576 bytes"),
    ]
    for kwargs, status, message in bad:
        r = requests.post(f"{server}/predict", timeout=30, **kwargs)
        assert r.status_code == status and message in r.json()["detail"], (status, r.status_code, r.text)

    again = requests.post(f"{server}/predict", files={"file": ("sign.ppm", good)}, timeout=30)
    assert again.status_code == 200 and again.json()["top"] == body["top"]


def _hang_up_mid_upload(url: str) -> None:
    """A client that announces a 100 kB upload, sends a little of it and disconnects."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as s:
        part = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.ppm"\r\n\r\n' + _ppm()[:20]
        s.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=x\r\n"
            b"Content-Length: 100000\r\n\r\n" + part
        )
        time.sleep(0.1)


@pytest.mark.e2e
def test_oversized_images_and_hang_ups_cost_the_other_clients_nothing(server, tmp_path):
    """Uploads declaring 81 megapixels (a few hundred kB each, 243 MB once decoded) are refused on their header
    while sign-sized uploads go on being answered; a client hanging up is no traceback in the log."""
    from concurrent.futures import ThreadPoolExecutor

    png = io.BytesIO()
    Image.new("L", (9000, 9000)).save(png, format="PNG")
    huge, good = png.getvalue(), _ppm()

    def post(data: bytes, name: str) -> requests.Response:
        return requests.post(f"{server}/predict", files={"file": (name, data)}, timeout=60)

    with ThreadPoolExecutor(16) as pool:
        flood = [pool.submit(post, huge, "huge.png") for _ in range(12)]
        normal = [pool.submit(post, good, "sign.ppm") for _ in range(6)]
        refused, answered = [f.result() for f in flood], [f.result() for f in normal]
    assert {r.status_code for r in answered} == {200}
    assert {r.status_code for r in refused} == {400}
    assert "is 9000x9000 pixels, over the limit of 40 megapixels" in refused[0].json()["detail"]
    for _ in range(3):
        _hang_up_mid_upload(server)
    assert post(good, "sign.ppm").status_code == 200
    assert "Traceback" not in (tmp_path / "server.log").read_text()


def test_top_k_beyond_the_checkpoints_classes_stops_serve_before_it_listens(tmp_path):
    from stnlab.errors import ConfigError
    from stnlab.query.server import build_server

    three = save_checkpoint(untrained([*TINY_TWO_ST, "data.num_classes=3"]), tmp_path / "three.ckpt")
    with pytest.raises(ConfigError, match=rf"top_k=5 must be an integer in 1..3 \({three} tells 3 classes apart\)"):
        build_server(str(three), 5, 1.0, torch.device("cpu"))
