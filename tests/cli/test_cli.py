"""The command lines: every entry point in src/ is a Hydra app whose --help lists its keys; errors are one line."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from conftest import CONF, ROOT, run_app, run_script
from stnlab.cli.help import help_text, read
from stnlab.config import checks
from stnlab.errors import ConfigError

APPS = sorted(p.stem for p in (ROOT / "src").glob("*.py"))


@pytest.fixture
def help_of(capsys, monkeypatch, tmp_path):
    """``python src/<app>.py <argv> --help``'s output, run in this process in tmp_path (a fresh interpreter's --help
    is test_help_and_a_command_line_that_does_not_compose_import_no_torch's)."""
    monkeypatch.chdir(tmp_path)

    def run(app: str, *argv: str) -> str:
        with pytest.raises(SystemExit) as stop:
            run_app(app, [*argv, "--help"])
        assert stop.value.code in (None, 0), capsys.readouterr().err[-2000:]
        return capsys.readouterr().out

    return run


@pytest.mark.parametrize("app", APPS)
def test_help_lists_the_keys_of_the_app_and_writes_nothing(app, help_of, tmp_path):
    from stnlab.config import compose
    from stnlab.tracking.run_identity import flat_config

    text = help_of(app)
    config = CONF / f"{app}.yaml"
    if config.is_file():  # an app whose config is named after it: each of its keys, with its default
        keys = [k for k in OmegaConf.load(config) if k not in ("defaults", "hydra")]
        missing = [k for k in keys if not re.search(rf"^  {re.escape(str(k))}[=.]", text, re.M)]
        assert not missing, text
        # Every leaf it composes (placed configs such as data.* included), each with a line of meaning.
        leaves = flat_config(OmegaConf.to_container(compose(app), resolve=False))
        described = {m.group(1) for m in re.finditer(r"^  ([\w./-]+)=\S*  +\S", text, re.M)}
        assert not [k for k in leaves if k not in described], text
    assert list(tmp_path.iterdir()) == []  # no outputs/, no .hydra/, no log file


def test_help_reads_comments_nested_keys_groups_and_placed_configs(tmp_path):
    (tmp_path / "part").mkdir()
    (tmp_path / "part" / "bits.yaml").write_text("# Bits of another file.\n\n# The size.\nsize: 3\n")
    (tmp_path / "app.yaml").write_text(
        "# python app.py [n=1]\n# Does things.\ndefaults:\n  - part/bits@bits\n  - _self_\n\n"
        "# How many.\nn: 1\nlevels: [1, 2]  # inline words\nnested:\n  # Documented.\n  a: x\n  b: y\n"
        "text: |\n  a: not a key\n# After a block scalar.\nlast: ${oc.env:HOME}\n"
    )
    doc = read(tmp_path / "app.yaml")
    assert doc.header == ["python app.py [n=1]", "Does things."]
    assert [(e.name, e.value, e.doc) for e in doc.keys] == [
        ("n", "1", "How many."),
        ("levels", "[1, 2]", "inline words"),
        ("nested", None, ""),
        ("nested.a", "x", "Documented."),
        ("text", "|", ""),
        ("last", "${oc.env:HOME}", "After a block scalar."),
        ("bits", None, "Bits of another file."),
        ("bits.size", "3", "The size."),
    ]
    assert "$${oc.env:HOME}" in help_text("app", tmp_path)  # '$' is special in Hydra's help template


@pytest.mark.parametrize("argv", [[], ["experiment=compact"]], ids=["defaults", "experiment=compact"])
def test_train_help_lists_every_leaf_key_of_the_composed_config_with_its_value_and_meaning(argv, help_of):
    from stnlab.config import compose_train
    from stnlab.tracking.run_identity import flat_config

    text = help_of("train", *argv)
    leaves = flat_config(OmegaConf.to_container(compose_train(argv), resolve=False))
    lines = {m.group(1): m.group(2) for m in re.finditer(r"^  ([\w./-]+)=(\S*)(?:  +(\S.*))?$", text, re.M)}
    described = {m.group(1) for m in re.finditer(r"^  ([\w./-]+)=\S*  +\S", text, re.M)}
    missing = [k for k in leaves if k not in lines]
    assert not missing, missing
    assert not [k for k in leaves if k not in described]  # each with its line of meaning
    # The values are this command line's: the recipe's step size, model and one-cycle schedule.
    assert ("optim.lr", "0.112") in lines.items() if argv else ("optim.lr", "0.01") in lines.items()
    assert ("data.image_size", "32" if argv else "48") in lines.items()
    assert any(k.startswith("trainer.") for k in lines) and any(k.startswith("data.") for k in lines)
    assert ("scheduler.pct_start" in lines) == bool(argv)
    assert all(len(line) <= 120 or "=" in line.split()[0] for line in text.splitlines())


def test_visualize_help_describes_n_and_scale(help_of):
    text = help_of("visualize")
    assert re.search(r"^  n=16 +Images shown, spread over the split's classes", text, re.M)
    assert re.search(r"^  scale=4 +Enlargement of each image pixel", text, re.M)


def test_train_help_lists_the_config_groups_with_their_options():
    text = help_text("train")
    assert re.search(r"^  model=two_st +options: .*no_st.*two_st", text, re.M)
    assert re.search(r"^  speed\.compile=false +torch\.compile", text, re.M)


def test_help_and_a_command_line_that_does_not_compose_import_no_torch(tmp_path):
    """The apps are imported when their job runs: --help and a bad command line answer in about a second."""
    code = (
        "import runpy, sys\n"
        f"for app in {APPS!r}:\n"
        "    for arg in ('--help', 'hydra/help=nope'):\n"
        f"        sys.argv = [r'{ROOT / 'src'}/' + app + '.py', arg]\n"
        "        try:\n"
        "            runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "        except SystemExit as e:\n"
        "            assert e.code in (None, 0, 2), (app, arg, e.code)\n"
        "print(sorted({'torch', 'lightning', 'optuna', 'wandb', 'onnxruntime', 'litserve'} & set(sys.modules)))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    env.pop("HYDRA_FULL_ERROR", None)
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip().splitlines()[-1] == "[]"
    assert res.stderr.count("stnlab: error: In 'hydra/config': Could not find 'hydra/help/nope'") == len(APPS)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["splitt=val"], "stnlab: error: unknown key 'splitt'; --help lists the keys"),
        (["data=gtsrb"], "stnlab: error: Could not override 'data'. No match in the defaults list."),
        (["ckpt"], "stnlab: error: Error parsing override 'ckpt'"),
    ],
)
def test_a_command_line_that_does_not_compose_is_one_line(argv, message, tmp_path):
    res = run_script("evaluate.py", *argv, cwd=tmp_path, timeout=120)
    assert res.returncode == 2 and res.stderr.startswith(message) and len(res.stderr.strip().splitlines()) == 1


def test_value_checks():
    assert checks.positive_int("n", 3) == 3 and checks.positive_int("n", "4") == 4
    for bad in (0, -1, True, 2.5, "x", None):
        with pytest.raises(ConfigError, match="expected a positive integer"):
            checks.positive_int("n", bad)
    assert checks.boolean("v", "yes") is True and checks.boolean("v", False) is False
    assert checks.finite_floats("r", 30) == [30.0] and checks.finite_floats("r", "0,10") == [0.0, 10.0]
    assert checks.words("ckpt", "a.ckpt") == ["a.ckpt"] and checks.words("ckpt", ["a", "b"]) == ["a", "b"]
    assert [checks.wandb_mode("w", v) for v in (False, True, "online", "disabled")] == [
        "disabled",
        None,
        "online",
        "disabled",
    ]
    assert checks.text([0, float("nan"), True, None]) == "[0,nan,true,null]"


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["experiment=compct"],
            "Could not find 'experiment/compct'; Available options in 'experiment': arcos_three_st",
        ),
        (["debug=limt"], "Could not find 'debug/limt'; Available options in 'debug': fdr, limit"),
    ],
)
def test_a_misspelt_optional_group_choice_is_one_line_naming_the_choices(argv, message, tmp_path):
    """experiment= and debug= default to none; a typo must not compose the default run and start hours of training."""
    res = run_script("train.py", *argv, f"data.mirror={tmp_path / 'nowhere'}", cwd=tmp_path)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr[-2000:]
    assert res.stderr.startswith("stnlab: error: In 'train': " + message)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.e2e
def test_a_multirun_goes_on_past_failed_jobs_lists_them_and_exits_non_zero(tiny_overrides, tmp_path):
    """Job 1 fails with a user error (one line), job 2 with a traceback (a bug): job 3 still runs."""
    train = [o for o in tiny_overrides if not o.startswith("run_dir=")]
    crash = "{_target_:tiny_runs.CrashAt,step:1}"
    res = run_script(
        "train.py",
        "-m",
        *train,
        "model=no_st",
        "model.backbone.widths=[8,8,8]",
        "model.backbone.fc=16",
        "data.image_size=16",
        "trainer.max_epochs=1",
        "wandb.mode=disabled",
        "callbacks.test_report=null",
        "hydra.sweep.dir=multirun",
        "optim.lr=0.01,-1",
        f"+callbacks.crash=null,{crash}",
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT / "tests")},
    )
    assert res.returncode == 1, res.stderr[-3000:]  # 1: a traceback among the failures (2 when all were user errors)
    lines = res.stderr.strip().splitlines()
    assert lines[-4:] == [
        f"stnlab: failed: multirun job #1 (optim.lr=0.01 +callbacks.crash={crash}): Crash: injected crash after step 1",
        "stnlab: failed: multirun job #2 (optim.lr=-1 +callbacks.crash=null): optim.lr=-1 must be positive (the reference uses 0.01)",
        f"stnlab: failed: multirun job #3 (optim.lr=-1 +callbacks.crash={crash}): optim.lr=-1 must be positive (the reference uses 0.01)",
        "stnlab: error: 3 of 4 multirun jobs failed (listed above)",
    ]
    assert (tmp_path / "multirun" / "0-no_st-affine-s1" / "metrics.json").is_file()  # the job that succeeded
