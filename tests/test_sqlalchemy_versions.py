"""The SQL layer on the lowest SQLAlchemy that setup.py allows (the suite itself runs on the
highest installed): the schema checks and the writes, in a virtualenv of their own."""
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOWEST = "2.0.0"  # setup.py: sqlalchemy>=2,<3


@pytest.fixture(scope="session")
def lowest_python(tmp_path_factory):
    """A Python whose SQLAlchemy is the lowest allowed and whose other packages are this one's."""
    venv = tmp_path_factory.mktemp("sqlalchemy-lowest")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    python = venv / "bin" / "python"
    installed = subprocess.run([str(python), "-m", "pip", "install", "-q", f"sqlalchemy=={LOWEST}"],
                               capture_output=True, text=True, timeout=300)
    if installed.returncode != 0:
        reason = f"cannot install sqlalchemy=={LOWEST}: {installed.stderr.strip().splitlines()[-1:]}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # After the venv's own site-packages: its SQLAlchemy wins, everything else comes from here.
    Path(site, "zz_project_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def test_schema_checks_and_writes_on_the_lowest_sqlalchemy(lowest_python):
    version = subprocess.run([str(lowest_python), "-c", "import sqlalchemy; print(sqlalchemy.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert version == LOWEST
    done = subprocess.run(
        [str(lowest_python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_sql_write.py",
         "tests/test_sql_versions.py", "-k", "refused or float or mixing or declared or highest or upsert_inserts"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout
