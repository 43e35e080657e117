"""The test suite itself: without ../shared/data the tests reading it are skipped, with the
reason, and the unit tests still run (the run is not aborted)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_tests_reading_shared_data_are_skipped_when_it_is_missing(tmp_path):
    env = {**os.environ, "XLANDCOVER_SHARED_DATA": str(tmp_path / "missing")}
    files = ["tests/test_laziness.py", "tests/io/test_raster.py"]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-rs", "-p", "no:cacheprovider", *files],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    passed = int(re.search(r"(\d+) passed", out).group(1))
    skipped = int(re.search(r"(\d+) skipped", out).group(1))
    assert passed >= 8 and skipped >= 2, out  # the synthetic ones ran, the Zion ones did not
    assert "test_open_raster_reads_nothing SKIPPED" in out and "XLANDCOVER_SHARED_DATA" in out
