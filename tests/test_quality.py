"""Quality gates: ruff and mypy are clean on the packages users import and run."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["sinks", "transforms", "pipelines"]


@pytest.mark.parametrize("tool", [["ruff", "check"], ["mypy"]], ids=["ruff", "mypy"])
def test_clean(tool):
    done = subprocess.run([sys.executable, "-m", *tool, *PACKAGES], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
