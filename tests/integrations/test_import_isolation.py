"""Importing bayesfn (and its integrations package) never imports BoTorch."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_bayesfn_does_not_import_botorch():
    code = (
        "import sys, bayesfn, bayesfn.integrations, bayesfn.processes, bayesfn.bayesnn\n"
        "heavy = sorted(m for m in sys.modules if m == 'botorch' or m.startswith('botorch.'))\n"
        "assert not heavy, heavy\n"
        "print('ok')\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
