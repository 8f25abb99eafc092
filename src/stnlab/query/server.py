"""An HTTP endpoint for a checkpoint, on LitServe: ``POST /predict`` with the image as the multipart form field
``file`` (``curl -F file=@sign.ppm http://127.0.0.1:8000/predict``) answers the top-k classes as JSON:

    {"top": [{"class_id": 14, "name": "stop", "prob": 0.93}, ...], "model": "compact_two_st",
     "image_size": 32, "input_size": [w, h]}

The image is read and resized exactly as ``src/predict.py`` reads one (:mod:`stnlab.query.images`).
Bad uploads get a 4xx with ``{"detail": "<one line: the problem and the fix>"}``: 415 for a body
that is not multipart, 413 for one over ``max_upload_mb``, 400 for a missing ``file`` field, an
empty file, or one that is not a readable image or is too small. ``GET /health`` answers ``ok``
once the model is loaded.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict

import litserve as ls
import torch
from fastapi import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse

from stnlab.data.gtsrb import open_image
from stnlab.query.images import InputError, decode_image, network_pixels
from stnlab.query.predictor import Predictor, check_top_k
from stnlab.training.checkpoints import config_of, load_module

FIELD = "file"
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the file, allowed on top of the limit
DECODE_SLOTS = 2  # large uploads decoded at once (each in its own thread); the others wait their turn
SMALL_PIXELS = 1_000_000  # up to this, an upload is decoded without waiting for a slot (3 MB of pixels)


class UploadGuard:
    """ASGI middleware answering, before the body is read, POSTs to ``path`` that are not multipart (415) or
    announce more than ``max_bytes`` (413). Bodies without a length are capped by LitServe's ``max_payload_size``."""

    def __init__(self, app, path: str, max_bytes: int):
        self.app, self.path, self.max_bytes = app, path, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == self.path:
            headers = dict(scope["headers"])
            kind = headers.get(b"content-type", b"").decode("latin-1")
            length = headers.get(b"content-length", b"").decode("latin-1")
            problem = None
            if not kind.startswith("multipart/form-data"):
                problem = (
                    415,
                    f"expected a multipart upload (form field '{FIELD}'), got content type "
                    f"'{kind or 'none'}'; send e.g. curl -F {FIELD}=@sign.ppm URL",
                )
            elif length.isdigit() and int(length) > self.max_bytes + MULTIPART_OVERHEAD:
                problem = (
                    413,
                    f"upload of {int(length)} bytes is over the limit of {self.max_bytes} bytes "
                    "(serve.py max_upload_mb); send a smaller image",
                )
            if problem:
                await JSONResponse({"detail": problem[1]}, status_code=problem[0])(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _large(data: bytes) -> bool:
    """Whether the image's header declares more than ``SMALL_PIXELS`` (unreadable ones: decode_image says why)."""
    try:
        with open_image(data) as im:
            return im.width * im.height > SMALL_PIXELS
    except Exception:  # noqa: BLE001 - any unreadable upload is reported by decode_image, one line
        return False


class ClientDisconnects(logging.Filter):
    """LitServe logs a client that hangs up before its upload is read as an ERROR with a traceback, one per
    client; it is routine for a server, so it becomes one DEBUG line (shown only where DEBUG is)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not (record.exc_info and isinstance(record.exc_info[1], ClientDisconnect)):
            return True
        record.msg, record.args = "a client disconnected before its upload was read", ()
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


class SignAPI(ls.LitAPI):
    """Loads ``ckpt`` in the inference worker; one image per request.

    The worker runs requests on an event loop (``enable_async``): each upload is decoded in a thread and the
    network runs in a thread, one batch at a time. Uploads over ``SMALL_PIXELS`` take one of ``DECODE_SLOTS``
    first: a flood of large photos holds that many decoded images in memory and delays no sign-sized upload;
    an image whose header declares more than ``MAX_PIXELS`` is refused before decoding."""

    def __init__(self, ckpt: str, top_k: int = 5, max_bytes: int = 10 << 20, device: str = "cpu"):
        super().__init__(max_batch_size=1, enable_async=True)
        self.ckpt, self.k, self.max_bytes, self.device_name = ckpt, top_k, max_bytes, device

    def setup(self, device):
        self.predictor = Predictor(load_module(self.ckpt, self.device_name), self.device_name, batch_size=1)
        self.decoding = asyncio.Semaphore(DECODE_SLOTS)
        self.network = asyncio.Lock()

    async def decode_request(self, request):
        upload = request.get(FIELD) if hasattr(request, "get") else None
        if upload is None or not hasattr(upload, "file"):
            raise HTTPException(400, f"no file in form field '{FIELD}'; send it as curl -F {FIELD}=@sign.ppm URL")
        data = upload.file.read(self.max_bytes + 1)
        if len(data) > self.max_bytes:
            raise HTTPException(
                413,
                f"upload is over the limit of {self.max_bytes} bytes (serve.py max_upload_mb); send a smaller image",
            )
        name = f"upload '{upload.filename or FIELD}'"
        try:
            if not _large(data):  # a sign-sized image: decoded at once, whatever large ones are queued
                return await asyncio.to_thread(self._pixels, data, name)
            async with self.decoding:
                return await asyncio.to_thread(self._pixels, data, name)
        except InputError as e:
            raise HTTPException(400, str(e)) from None

    def _pixels(self, data: bytes, name: str):
        image = decode_image(data, name)
        return network_pixels(image, self.predictor.image_size)[None], image.size

    async def predict(self, x):
        pixels, size = x
        async with self.network:
            return await asyncio.to_thread(self.predictor.probabilities, pixels), size

    async def encode_response(self, output):
        probs, size = output
        return {
            "top": [asdict(g) for g in self.predictor.top_k(probs, self.k)[0]],
            "model": config_of(self.predictor.module).model,
            "image_size": self.predictor.image_size,
            "input_size": list(size),
        }


def build_server(
    ckpt: str, top_k: int, max_upload_mb: float, device: torch.device, timeout: float = 30
) -> ls.LitServer:
    """A LitServer for ``ckpt``; the checkpoint is loaded here once first, so a bad one (or a ``top_k`` beyond its
    classes) fails before serving."""
    check_top_k(top_k, config_of(load_module(ckpt, "cpu")).num_classes, ckpt)
    disconnects = logging.getLogger("litserve.server")  # the HTTP servers are forked from here: they inherit it
    if not any(isinstance(f, ClientDisconnects) for f in disconnects.filters):
        disconnects.addFilter(ClientDisconnects())
    max_bytes = int(max_upload_mb * (1 << 20))
    api = SignAPI(ckpt, top_k, max_bytes, str(device))
    return ls.LitServer(
        api,
        accelerator="cuda" if device.type == "cuda" else "cpu",
        devices=1,
        workers_per_device=1,
        timeout=timeout,
        max_payload_size=max_bytes + MULTIPART_OVERHEAD,
        middlewares=[(UploadGuard, {"path": api.api_path, "max_bytes": max_bytes})],
    )
