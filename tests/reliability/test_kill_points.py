"""Promise: a CLI job killed at any point of its life (SIGKILL: no clean-up at all) is finished
by ``--resume``, and the outputs are byte-identical to those of a job never interrupted."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from xlandcover.cli import main

from ..conftest import make_image

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def job(tmp_path_factory, tiny_package):
    """The scene, the job's options, and the outputs of an uninterrupted run."""
    inputs = tmp_path_factory.mktemp("inputs")
    scene = inputs / "scene.tif"
    make_image(256, 192, seed=4).rio.to_raster(scene)
    options = [str(scene), "--model", str(tiny_package.path), "--chunk", "64"]
    options += ["--scheduler", "inprocess", "--bands", "red,green,blue"]
    ref = tmp_path_factory.mktemp("reference")
    assert main(["predict", *options, *_outputs(ref)]) == 0
    return options, _snapshot(ref)


def _outputs(folder: Path) -> list[str]:
    return ["--out", str(folder / "map.zarr"), "--cog", str(folder / "map.tif")]


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "phase",
    [
        "before-manifest",
        "mid-chunks",
        "cog-stream",
        "cog-copy",
        "after-publish",
        "after-cog-publish",
    ],
)
def test_a_job_killed_at_any_phase_resumes_to_byte_identical_outputs(tmp_path, job, phase):
    options, reference = job
    command = [sys.executable, "-m", "tests.reliability.killer", phase, "--", "predict"]
    killed = subprocess.run(
        [*command, *options, *_outputs(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert main(["predict", *options, *_outputs(tmp_path), "--resume"]) == 0
    assert _snapshot(tmp_path) == reference  # same files, same bytes, nothing left over


def test_a_finished_job_resumed_again_is_left_as_it_is(tmp_path, job, caplog):
    options, reference = job
    caplog.set_level(logging.INFO, logger="xlandcover")
    assert main(["predict", *options, *_outputs(tmp_path)]) == 0
    assert main(["predict", *options, *_outputs(tmp_path), "--resume"]) == 0
    assert "already complete" in caplog.text and "already written by this job" in caplog.text
    assert _snapshot(tmp_path) == reference
    assert main(["predict", *options, *_outputs(tmp_path)]) == 1  # a plain rerun still refuses
