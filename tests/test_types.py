"""mypy is clean on mpirt/ at the strictness mypy.ini states."""
import os
import subprocess
import sys

import pytest

from conftest import REPO


def test_mypy_is_clean_on_the_package():
    pytest.importorskip("mypy", reason="mypy comes with the test extra: pip install -e '.[test]'")
    proc = subprocess.run([sys.executable, "-m", "mypy", "--config-file", os.path.join(REPO, "mypy.ini")],
                          cwd=REPO, capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stdout + proc.stderr
