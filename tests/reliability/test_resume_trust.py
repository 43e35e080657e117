"""Promises about resuming: a job resumes only onto the inputs it started from, only trusts
records whose data is on disk, and only one job writes a store at a time."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
from distributed import Client

import xlandcover as xlc
import xlandcover.output._resume
from xlandcover.cli import main
from xlandcover.errors import ChunkFailedError, InputChangedError, OutputLockedError
from xlandcover.output import write_zarr_resumable

from ..conftest import make_image

ROOT = Path(__file__).resolve().parents[2]


def _zarr_input(path: Path, seed: int) -> Path:
    img = make_image(256, 256, seed=seed)
    img.name = "image"
    img.to_dataset().to_zarr(path, zarr_format=3, consolidated=False, mode="w")
    return path


def _read(store: Path) -> np.ndarray:
    return xr.open_zarr(store, consolidated=False)["landcover"].values


def test_resume_refuses_a_zarr_input_rewritten_in_place(tmp_path, tiny_package, caplog):
    """The store's metadata (and so Dask's token) stays the same when its chunks are
    rewritten: the job's fingerprint of the input's files must tell."""
    scene = _zarr_input(tmp_path / "scene.zarr", seed=1)
    out = tmp_path / "map.zarr"
    args = ["predict", str(scene), "--model", str(tiny_package.path), "--out", str(out)]
    args += ["--chunks", "64", "--scheduler", "inprocess"]
    killed = subprocess.run(
        [sys.executable, "-m", "tests.reliability.killer", "mid-chunks", "--", *args],
        cwd=ROOT,
        capture_output=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL
    token = xlc.open_raster(scene, chunks=64).data.name
    new = make_image(256, 256, seed=2)
    zarr.open_group(scene, mode="r+")["image"][:] = new.values  # same shape, dtype, chunks
    assert xlc.open_raster(scene, chunks=64).data.name == token  # Dask cannot tell
    caplog.set_level(logging.INFO, logger="xlandcover")
    assert main([*args, "--resume"]) == 1
    assert "inputs of the unfinished job" in caplog.text and str(scene) in caplog.text
    assert not out.exists()


def _stopped_job(labels, out: Path, client, **kwargs):
    """Run the job until a few chunks are recorded, then let chunk (3, 3) fail: the job's
    labels (to resume with) and the chunks recorded."""
    done = out.with_name(f".{out.name}.partial") / "done"
    flag = out.with_name("failing")
    flag.touch()

    def fail_late(block, block_info=None):
        if block_info is not None and block_info[0]["chunk-location"] == (3, 3) and flag.exists():
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and len(list(done.glob("*"))) < 3:
                time.sleep(0.02)
            raise OSError("disk hiccup")
        return block

    broken = labels.copy(data=labels.data.map_blocks(fail_late, dtype=labels.dtype))
    with pytest.raises(ChunkFailedError):
        write_zarr_resumable(broken, out, client=client, progress=False, **kwargs)
    flag.unlink()
    return broken, sorted(p.name for p in done.iterdir())


def test_resume_refuses_a_changed_input_through_the_api(tmp_path, tiny_package):
    scene = _zarr_input(tmp_path / "scene.zarr", seed=1)
    labels = xlc.predict(xlc.open_raster(scene, chunks=64), tiny_package, chunks=None)
    out = tmp_path / "map.zarr"
    with Client(processes=False, n_workers=1, threads_per_worker=2) as client:
        job, done = _stopped_job(labels, out, client, inputs=[scene])
        assert done
        zarr.open_group(scene, mode="r+")["image"][:, :64, :64] = 0
        with pytest.raises(InputChangedError, match=r"Delete .* to start again"):
            write_zarr_resumable(
                job, out, client=client, progress=False, resume=True, inputs=[scene]
            )


def test_a_recorded_chunk_whose_data_is_missing_is_computed_again(tmp_path, tiny_package):
    img = make_image(256, 256, seed=3).chunk({"band": -1, "y": 64, "x": 64})
    labels = xlc.predict(img, tiny_package, chunks=None)
    out = tmp_path / "map.zarr"
    with Client(processes=False, n_workers=1, threads_per_worker=2) as client:
        job, done = _stopped_job(labels, out, client)
        assert done
        partial = tmp_path / ".map.zarr.partial"
        lost = partial / "store.zarr" / "landcover" / "c" / done[0].replace("-", "/")
        lost.unlink()  # a record whose data never reached the disk
        write_zarr_resumable(job, out, client=client, progress=False, resume=True)
    np.testing.assert_array_equal(_read(out), labels.values)  # no zeros where data was lost


def test_chunk_data_is_flushed_to_disk_before_its_record(tmp_path, tiny_package, monkeypatch):
    events: list[tuple[str, str]] = []
    real_fsync, real_write = xlandcover.output._resume.fsync_file, Path.write_bytes

    def fsync(path):
        events.append(("fsync", str(path)))
        real_fsync(path)

    def write_bytes(self, *args, **kwargs):
        if self.parent.name == "done":
            events.append(("record", self.name))
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(xlandcover.output._resume, "fsync_file", fsync)
    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    labels = xlc.predict(make_image(128, 128).chunk({"y": 64, "x": 64}), tiny_package, chunks=None)
    with Client(processes=False, n_workers=1, threads_per_worker=1) as client:
        write_zarr_resumable(labels, tmp_path / "map.zarr", client=client, progress=False)
    records = [name for kind, name in events if kind == "record"]
    assert sorted(records) == ["0-0", "0-1", "1-0", "1-1"]
    for name in records:
        chunk = "/landcover/c/" + name.replace("-", "/")
        flushed = [i for i, (k, p) in enumerate(events) if k == "fsync" and p.endswith(chunk)]
        assert flushed and flushed[0] < events.index(("record", name))


def test_a_second_job_on_the_same_store_is_told_who_holds_it(tmp_path, tiny_package, caplog):
    out = tmp_path / "map.zarr"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from xlandcover.output._targets import "
            "output_lock\nwith output_lock(Path(sys.argv[1])):\n print('held', flush=True); "
            "time.sleep(60)",
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        labels = xlc.predict(make_image(64, 64), tiny_package)
        with pytest.raises(OutputLockedError) as err:
            xlc.to_zarr(labels, out)
        message = str(err.value)
        assert f"pid {holder.pid} on {socket.gethostname()}" in message
        assert "delete" in message and ".map.zarr.lock" in message
    finally:
        holder.kill()
        holder.wait()
    xlc.to_zarr(labels, out)  # the holder is gone: its lock is stale and taken over
    assert sorted(os.listdir(tmp_path)) == ["map.zarr"]


def test_a_lock_held_on_another_host_is_not_taken_over(tmp_path, tiny_package):
    out = tmp_path / "map.zarr"
    lock = tmp_path / ".map.zarr.lock"
    lock.write_text(json.dumps({"pid": 1, "host": "node-17", "since": "2026-01-01T00:00:00"}))
    with pytest.raises(OutputLockedError, match="pid 1 on node-17"):
        xlc.to_zarr(xlc.predict(make_image(64, 64), tiny_package), out)
    assert lock.exists()
