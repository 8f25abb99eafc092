"""Benchmark every model preset: ``python src/bench.py [--device cuda] [--image-size 32 48] [--quick]``.

Needs torch, lightning, torchmetrics and PyYAML only: it runs on a GPU machine as it comes.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # runs from a checkout without `pip install -e .`

from stnlab.bench import main  # noqa: E402
from stnlab.cli import run_cli  # noqa: E402

if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
