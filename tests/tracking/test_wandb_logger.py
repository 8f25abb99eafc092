"""W&B without credentials or server (stnlab.tracking.wandb_logger): the run logs offline with one warning, quickly;
an unwritable W&B data folder costs the media, never the finished run."""

from __future__ import annotations

import http.server
import json
import logging
import socket
import threading
import time

import pytest

from conftest import compose
from stnlab.training.run import train
from tiny_runs import tiny_run


@pytest.fixture
def wandb_env(monkeypatch, tmp_path):
    for key in ("WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_MODE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_MODE", "online")
    return monkeypatch


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "W&B" in r.getMessage()]


def test_wandb_online_without_a_key_logs_offline_with_one_warning(wandb_env, caplog):
    from stnlab.tracking.wandb_logger import resolve_mode

    with caplog.at_level(logging.WARNING):
        assert resolve_mode(None) == "offline"
    (warning,) = _warnings(caplog)
    assert "no API key" in warning and "wandb sync" in warning


@pytest.mark.timeout(30)
@pytest.mark.parametrize("server", ["closed_port", "silent"])
def test_wandb_server_down_or_silent_logs_offline_quickly(server, wandb_env, caplog):
    """A refused port, and a server that accepts connections but never answers (W&B itself would wait on it
    for 80 s, then crash the run)."""
    from stnlab.tracking.wandb_logger import resolve_mode

    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    if server == "closed_port":
        sock.close()
    wandb_env.setenv("WANDB_API_KEY", "f" * 40)
    wandb_env.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    start = time.monotonic()
    try:
        with caplog.at_level(logging.WARNING):
            assert resolve_mode(None) == "offline"
    finally:
        sock.close()
    assert time.monotonic() - start < 10
    (warning,) = _warnings(caplog)
    assert "unreachable" in warning


class _Reject(http.server.BaseHTTPRequestHandler):
    def _reject(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"errors": [{"message": "invalid API key"}]}')

    do_GET = do_POST = _reject

    def log_message(self, *args):
        pass


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_wandb_rejected_key_falls_back_to_offline(wandb_env, caplog, tmp_path):
    """A server that answers but rejects the key: wandb.init raises; the run goes on offline."""
    from stnlab.tracking.wandb_logger import make_wandb_logger

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Reject)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    wandb_env.setenv("WANDB_API_KEY", "f" * 40)
    wandb_env.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}")
    try:
        with caplog.at_level(logging.WARNING):
            logger = make_wandb_logger(tmp_path, {}, {"model": "m", "image_size": 16})
        assert logger is not None and logger.experiment.settings.mode in ("offline", "dryrun")
        logger.experiment.finish()
    finally:
        server.shutdown()
    (warning,) = _warnings(caplog)
    assert "online start failed" in warning and "logging offline" in warning


@pytest.mark.e2e
@pytest.mark.timeout(300)
@pytest.mark.parametrize("where", ["under_a_file", "is_a_file"])
def test_unwritable_wandb_data_dir_warns_and_the_run_completes(
    where, gtsrb_mirror, data_root, tmp_path, monkeypatch, caplog
):
    """W&B stages the test report's table images in WANDB_DATA_DIR (default ~/.local/share/wandb): unwritable,
    it raised PermissionError after training and the finished run was lost (exit 1, no metrics.json)."""
    from stnlab.tracking.runfile import read_run

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("WANDB_DATA_DIR", str(blocker / "wandb" if where == "under_a_file" else blocker))
    run = tmp_path / "run"
    cfg = tiny_run(
        gtsrb_mirror,
        data_root,
        run,
        "trainer.max_epochs=1",
        "wandb.mode=offline",
        "callbacks.test_report={_target_:stnlab.evaluation.TestReport,max_errors:4}",
    )
    with caplog.at_level(logging.WARNING):
        metrics = train(compose(cfg))
    (warning,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("W&B:")]
    assert "media were not logged" in warning and "WANDB_DATA_DIR" in warning
    assert {"val/acc_best", "test/acc", "test/f1_macro"} <= set(metrics)
    assert json.loads((run / "metrics.json").read_text())["test/acc"] == metrics["test/acc"]
    assert (run / "eval" / "test_report.json").is_file()
    (wandb_run,) = (run / "wandb").glob("offline-run-*")
    assert read_run(wandb_run).complete  # closed normally, with its summary
