"""Exported networks (ONNX in onnxruntime, TorchScript, ExportedProgram) agree with PyTorch; ``src/export.py``.

ONNX parity is checked for every model preset (a few in the quick run, covering both backbones, affine,
projective and TPS STs and both image sizes; the rest marked slow: each export takes ~4 s of tracing).
"""

from __future__ import annotations

import json
import os
import stat
import warnings
from pathlib import Path

import pytest
import torch

from conftest import CONF, TINY_TWO_ST
from query_checkpoint import save_checkpoint, untrained
from stnlab.errors import ConfigError
from stnlab.query.classifier import ImageClassifier
from stnlab.query.export import TOLERANCE, example_images, export_classifier, load_exported, max_difference

PRESETS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
QUICK = [("two_st", "affine", 32), ("two_st", "projective", 48), ("compact_two_st", "tps", 32)]
SLOW = [(m, "affine", 32) for m in PRESETS if (m, "affine", 32) not in QUICK] + [
    ("two_st", "tps", 48),
    ("two_st", "projective", 32),
    ("compact_two_st", "affine", 48),
]


def _classifier(model: str, transform: str, size: int) -> ImageClassifier:
    return ImageClassifier.of(untrained([f"model={model}", f"transform={transform}"], image_size=size))


def _check_onnx(tmp_path: Path, model: str, transform: str, size: int, dtype: str = "uint8") -> None:
    classifier = _classifier(model, transform, size)
    x = example_images(size, 3, dtype)
    with torch.no_grad():
        moved = (
            (
                classifier(x)
                - ImageClassifier.of(untrained([f"model={model}", "transform=affine"], image_size=size, st_noise=0.0))(
                    x
                )
            )
            .abs()
            .max()
        )
    if classifier.net.transformers and transform == "affine":
        assert moved > 1e-3  # the STs are off the identity, so the exported sampler is exercised
    path = export_classifier(classifier, "onnx", tmp_path / f"{model}.onnx", dtype)
    diff = max_difference(classifier, load_exported(path), dtype, batches=(3, 1, 5))
    assert diff < TOLERANCE, (model, transform, size, diff)


@pytest.mark.e2e
@pytest.mark.parametrize("model,transform,size", QUICK)
def test_onnx_matches_pytorch(tmp_path, model, transform, size):
    _check_onnx(tmp_path, model, transform, size)


@pytest.mark.slow
@pytest.mark.parametrize("model,transform,size", SLOW)
def test_onnx_matches_pytorch_every_preset(tmp_path, model, transform, size):
    _check_onnx(tmp_path, model, transform, size)


def test_every_preset_is_covered():
    assert {m for m, _, _ in QUICK + SLOW} == set(PRESETS)


def test_torchscript_loads_and_matches(tmp_path):
    classifier = _classifier("compact_two_st", "tps", 32)  # TPS: its constant cache must be filled before tracing
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = export_classifier(classifier, "torchscript", tmp_path / "m.torchscript.pt")
    # The trace's TracerWarnings (the transforms' shape tests) and torch's pytree FutureWarning are known noise.
    assert not [w for w in caught if issubclass(w.category, (torch.jit.TracerWarning, FutureWarning))]
    run = load_exported(path)
    assert max_difference(classifier, run, batches=(3, 1, 5)) < TOLERANCE
    assert max_difference(classifier, run, "float32", batches=(2,)) < TOLERANCE  # float images too


@pytest.mark.e2e
def test_export_app_exported_program_with_wandb_artifact(tmp_path, monkeypatch):
    from hydra import compose, initialize_config_dir

    from stnlab.apps.export import export
    from stnlab.tracking.runfile import iter_records

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb_data"))  # where W&B stages artifact files
    module = untrained(TINY_TWO_ST + ["transform=projective"])
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    ckpt = save_checkpoint(module, run_dir / "checkpoints" / "last.ckpt")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="export", overrides=[f"ckpt={ckpt}", "format=exported_program", "wandb=true"])
    path = export(cfg)
    assert path == run_dir / "export" / "last.pt2"
    info = json.loads(path.with_name("last.pt2.json").read_text())
    assert info["input"]["shape"] == ["N", 3, 32, 32] and info["max_abs_logit_difference"] < TOLERANCE
    assert len(info["classes"]) == 43 and info["classes"][14] == "stop"
    with open(path, "rb") as f:
        program = torch.export.load(f).module()
    x = example_images(32, 4)
    with torch.no_grad():
        assert (program(x) - module(x)).abs().max() < TOLERANCE
    (run_file,) = (run_dir / "export" / "wandb").glob("offline-run-*/run-*.wandb")
    artifacts = [r.artifact for r in iter_records(run_file) if r.WhichOneof("record_type") == "artifact"]
    assert [(a.name, a.type) for a in artifacts] == [("custom-two_st-projective-synth32-s1-exported_program", "model")]
    assert sorted(e.path for e in artifacts[0].manifest.contents) == ["last.pt2", "last.pt2.json"]
    assert not list((run_dir / "export").glob(".*.part"))
    umask = os.umask(0)
    os.umask(umask)
    for written in (path, path.with_name("last.pt2.json")):  # the mode of every other output, not mkstemp's 0600
        assert stat.S_IMODE(written.stat().st_mode) == 0o666 & ~umask


def test_bad_export_options(tmp_path):
    from hydra import compose, initialize_config_dir

    from stnlab.apps.export import export

    ckpt = save_checkpoint(untrained(TINY_TWO_ST), tmp_path / "m.ckpt")
    for override, message in (
        ("format=tflite", "format=tflite is not one of onnx"),
        ("opset=13", "opset=13: the ONNX exporter writes opsets 18..23"),
        ("dtype=int16", "dtype=int16 is not one of uint8, float32"),
    ):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(config_name="export", overrides=[f"ckpt={ckpt}", override])
        with pytest.raises(ConfigError, match=message):
            export(cfg)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ckpt"]


def _small_disk():
    """In the child: writes past 64 kB fail with EFBIG, as on a full disk (or a quota)."""
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


@pytest.mark.e2e
@pytest.mark.parametrize("fmt", ["torchscript", "exported_program"])
def test_export_to_a_full_disk_is_one_line_and_leaves_nothing(fmt, tmp_path):
    """torch's C++ file writer aborted the interpreter there (exit 134), leaving its .part behind."""
    import os
    import subprocess
    import sys

    from conftest import ROOT

    ckpt = save_checkpoint(untrained(TINY_TWO_ST), tmp_path / "m.ckpt")
    out = tmp_path / "out" / f"m.{fmt}"
    out.parent.mkdir()
    env = dict(os.environ, WANDB_MODE="disabled")
    env.pop("HYDRA_FULL_ERROR", None)
    res = subprocess.run(
        [sys.executable, str(ROOT / "src" / "export.py"), f"ckpt={ckpt}", f"format={fmt}", f"out={out}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_small_disk,
    )
    assert res.returncode == 2, res.stderr[-3000:]
    assert res.stderr.strip().splitlines()[-1] == (
        f"stnlab: error: cannot write {out} (File too large); pass out= a file in a writable folder with free space"
    )
    assert list(out.parent.iterdir()) == []


def test_export_into_a_read_only_folder_is_one_line(tmp_path):
    import os

    from hydra import compose, initialize_config_dir

    from stnlab.apps.export import export
    from stnlab.query.export import ExportError

    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o555)
    if os.access(folder, os.W_OK):  # root writes anywhere: sysfs refuses new files even to root
        folder = Path("/sys")
    ckpt = save_checkpoint(untrained(TINY_TWO_ST), tmp_path / "m.ckpt")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="export", overrides=[f"ckpt={ckpt}", "format=onnx", f"out={folder / 'm.onnx'}"])
    with pytest.raises(ExportError, match=rf"cannot write {folder / 'm.onnx'} \((Permission denied|Read-only)"):
        export(cfg)
