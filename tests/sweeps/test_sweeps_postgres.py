"""Two sweep workers (``src/sweep.py`` processes) sharing one grid study on a real PostgreSQL server.

The test starts its own server from the Debian package's binaries (``/usr/lib/postgresql/*/bin``)
in a temp folder, on a free 127.0.0.1 port; it skips when they are absent.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.trial import TrialState

from conftest import ROOT
from stnlab.sweeps.storage import make_storage

pytestmark = pytest.mark.postgres


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_url(tmp_path):
    """A throwaway PostgreSQL server with an empty ``optuna`` database; yields its URL."""
    bindir = _bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql)")
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        runuser = shutil.which("runuser")
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server")
        if runuser is None:
            pytest.skip("running as root and runuser is missing")
        as_user = [runuser, "-u", "postgres", "--"]
        base = Path(tempfile.mkdtemp(prefix="stnlab-pg-"))
        os.chown(base, pw.pw_uid, pw.pw_gid)
    else:
        base = tmp_path / "pg"
        base.mkdir()
    data, port = base / "data", _free_port()

    def pg(*args: str) -> None:
        res = subprocess.run(as_user + [str(a) for a in args], cwd=base, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, f"{args[0]} failed:\n{res.stdout}\n{res.stderr}"

    pg(bindir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    pg(
        bindir / "pg_ctl",
        "-D",
        data,
        "-l",
        base / "server.log",
        "-w",
        "-t",
        "60",
        "-o",
        f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off",
        "start",
    )
    try:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE optuna")
        conn.close()
        yield f"postgresql://postgres@127.0.0.1:{port}/optuna"
    finally:
        pg(bindir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.e2e
def test_two_workers_share_a_grid_study_each_point_once(postgres_url, tiny_overrides, tmp_path):
    seeds = [1, 2, 3, 4]
    spec = tmp_path / "pg.yaml"
    OmegaConf.save(
        OmegaConf.create(
            {
                "study": "pg",
                "sampler": "grid",
                "pruner": "none",
                "overrides": [
                    "model=no_st",
                    "data.image_size=16",
                    "trainer.max_epochs=1",
                    "wandb.mode=disabled",
                    "++callbacks.test_report=null",
                ],
                "params": {"seed": {"choices": seeds}},
            }
        ),
        spec,
    )
    train = [o for o in tiny_overrides if not o.startswith("run_dir=")]
    cmd = [
        sys.executable,
        str(ROOT / "src" / "sweep.py"),
        f"sweep={spec}",
        f"storage={postgres_url}",
        f"out_dir={tmp_path / 'sweeps'}",
        *train,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="disabled")
    env.pop("HYDRA_FULL_ERROR", None)
    workers = [
        subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=400)[0] for w in workers]
    for w, out in zip(workers, outputs):
        assert w.returncode == 0, out[-3000:]

    trials = optuna.load_study(study_name="pg", storage=make_storage(postgres_url)).get_trials()
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    states = [(t.number, t.state.name, t.params, t.system_attrs.get("grid_id"), t.user_attrs) for t in trials]
    assert sorted(t.params["seed"] for t in done) == seeds, states  # every grid point, each once
    # Anything else can only be a trial that a worker drew after the grid ran out, ended unrun.
    assert all(
        t.state == TrialState.PRUNED and t.user_attrs.get("prune_reason", "").startswith("grid exhausted")
        for t in trials
        if t.state != TrialState.COMPLETE
    )
    for t in done:
        assert (tmp_path / "sweeps" / "pg" / f"trial_{t.number}" / "metrics.json").is_file()
    assert "| 1 | (fixed config) | 0 | 4 |" in (tmp_path / "sweeps" / "pg" / "report.md").read_text()
    print(
        "trials per worker:",
        {w: sum(t.user_attrs["worker"] == w for t in done) for w in {t.user_attrs["worker"] for t in done}},
    )
