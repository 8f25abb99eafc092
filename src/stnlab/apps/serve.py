"""``python src/serve.py ckpt=PATH [host=127.0.0.1] [port=8000] [top_k=5]``: the checkpoint behind ``POST /predict``."""

from __future__ import annotations

import os
import signal
import socket

from omegaconf import DictConfig

from stnlab.config.checks import positive_key, positive_number, required
from stnlab.errors import ConfigError, StnlabError
from stnlab.query.predictor import check_top_k
from stnlab.query.server import build_server
from stnlab.training.checkpoints import pick_device


def _stopper(main_pid: int):
    def stop(signum, frame):
        if os.getpid() != main_pid:  # a forked HTTP server process, re-raising the signal after its own shutdown
            raise SystemExit(0)
        raise KeyboardInterrupt  # LitServe's own shutdown path: it stops the HTTP server and the inference worker

    return stop


def check_port(host: str, port: int) -> None:
    """Refuse, as one line, a port that is taken or a host that is not this machine's (uvicorn would log and exit)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            s.bind((host, port))
    except OSError as e:
        raise StnlabError(f"cannot listen on {host}:{port} ({e.strerror or e}); pass another port= or host=") from None


def serve(cfg: DictConfig) -> None:
    ckpt = required(cfg, "ckpt", "<run_dir>/checkpoints/best-*.ckpt")
    k = check_top_k(cfg.top_k)
    port = positive_key(cfg, "port")
    if port > 65535:
        raise ConfigError(f"port={port}: expected 1..65535")
    limit = positive_number("max_upload_mb", cfg.max_upload_mb, "a positive number of megabytes")
    check_port(str(cfg.host), port)
    server = build_server(ckpt, k, float(limit), pick_device(cfg.device), positive_key(cfg, "timeout"))
    url = f"http://{cfg.host}:{port}/predict"
    print(f"serving {ckpt} at {url}; try: curl -F file=@sign.ppm {url}", flush=True)
    # By default SIGTERM would end this process alone, orphaning the inference worker.
    signal.signal(signal.SIGTERM, _stopper(os.getpid()))
    server.run(
        host=str(cfg.host), port=port, generate_client_file=False, log_level=str(cfg.log_level), num_api_servers=1
    )
