"""Command-line glue: user errors become one line on stderr and exit status 2."""

from __future__ import annotations

import logging
import sys

from stnlab.errors import StnlabError


def run_cli(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except StnlabError as e:
        logging.getLogger("stnlab").debug("user error", exc_info=True)
        print(f"stnlab: error: {e}", file=sys.stderr)
        sys.exit(2)
