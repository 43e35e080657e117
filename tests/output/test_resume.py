"""Batch jobs with real processes: SIGKILL then --resume, a failing chunk, one model per worker."""

from __future__ import annotations

import logging
import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from distributed import Client, LocalCluster, SchedulerPlugin

import xlandcover as xlc
from xlandcover.cli import main
from xlandcover.errors import ChunkFailedError
from xlandcover.output import write_zarr_resumable

from ..conftest import make_image

FLAG = "XLANDCOVER_TEST_FAIL_FLAG"


def _read(store: Path) -> np.ndarray:
    return xr.open_zarr(store, consolidated=False)["landcover"].values


def test_killed_job_resumes_only_unfinished_chunks_bit_identical(tmp_path, tiny_package, caplog):
    scene = tmp_path / "scene.tif"
    make_image(768, 512, seed=11).rio.to_raster(scene)
    args = [str(scene), "--model", str(tiny_package.path), "--chunks", "64"]
    args += ["--scheduler", "inprocess", "--bands", "red,green,blue"]
    assert main(["predict", *args, "--out", str(tmp_path / "ref.zarr")]) == 0

    out = tmp_path / "out.zarr"
    job = subprocess.Popen(
        [sys.executable, "-m", "xlandcover.cli", "predict", *args, "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    done = tmp_path / ".out.zarr.partial" / "done"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(done.glob("*")) if done.exists() else []) < 20:
        time.sleep(0.01)
    os.kill(job.pid, signal.SIGKILL)
    job.wait()
    finished = len(list(done.glob("*")))
    total = (768 // 64) * (512 // 64)
    assert 20 <= finished < total, "the job must be killed mid-way"
    assert not out.exists()  # nothing that looks complete

    caplog.set_level(logging.INFO, logger="xlandcover")
    assert main(["predict", *args, "--out", str(out)]) == 1  # refuses to clobber the job
    assert "--resume" in caplog.text
    caplog.clear()
    assert main(["predict", *args, "--out", str(out), "--resume"]) == 0
    assert (
        f"{total - finished} of {total} chunks to compute ({finished} done before)" in caplog.text
    )
    np.testing.assert_array_equal(_read(out), _read(tmp_path / "ref.zarr"))
    assert not (tmp_path / ".out.zarr.partial").exists()


def _flaky(labels: xr.DataArray, flag: Path) -> xr.DataArray:
    def read(block, block_info=None):
        if block_info[0]["chunk-location"][1:] == (3, 3) and flag.exists():
            raise OSError("unreadable input chunk")
        return block

    return labels.copy(data=labels.data.map_blocks(read, dtype=labels.dtype))


def test_failing_chunk_is_named_and_finished_chunks_are_kept(tmp_path, tiny_package, caplog):
    flag = tmp_path / "broken"
    flag.touch()
    img = make_image(256, 256).chunk({"band": -1, "y": 64, "x": 64})
    labels = xlc.predict(_flaky(img, flag), tiny_package, chunks=None)  # keep 64 px chunks
    out = tmp_path / "out.zarr"
    with Client(processes=False, n_workers=1, threads_per_worker=1) as client:
        # input chunk (3, 3) is unreadable: it and its neighbours (whose halo reads it) fail
        bounds = r"chunk \((\d), (\d)\) \(rows (\d+):(\d+), columns (\d+):(\d+)\) failed"
        with pytest.raises(ChunkFailedError, match=bounds + r": OSError\('unreadable") as err:
            write_zarr_resumable(labels, out, client=client, progress=False)
        iy, ix, r0, r1, c0, c1 = map(int, re.search(bounds, str(err.value)).groups())
        # an output chunk whose halo reaches input chunk (3, 3): rows and columns 2-3
        assert {iy, ix} <= {2, 3}
        assert (r0, r1, c0, c1) == (64 * iy, 64 * iy + 64, 64 * ix, 64 * ix + 64)
        kept = {p.name for p in (tmp_path / ".out.zarr.partial" / "done").glob("*")}
        assert len(kept) <= 12 and not kept & {"2-2", "2-3", "3-2", "3-3"}
        flag.unlink()  # the input is readable again: the same job resumes
        caplog.set_level(logging.INFO, logger="xlandcover")
        write_zarr_resumable(labels, out, client=client, resume=True, progress=False)
        assert f"{16 - len(kept)} of 16 chunks to compute" in caplog.text
    np.testing.assert_array_equal(_read(out), xlc.predict(img, tiny_package).values)


class HeavyTasks(SchedulerPlugin):
    """Records the tasks whose specification is bigger than half the model package."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.heavy: set = set()

    def update_graph(self, scheduler, **kwargs) -> None:
        for key, ts in scheduler.tasks.items():
            if ts.run_spec is not None and len(pickle.dumps(ts.run_spec)) > self.size // 2:
                self.heavy.add(key)


def test_model_is_built_once_per_worker_process(tmp_path, tiny_package):
    from xlandcover.model._runtime import LOAD_COUNTS

    img = make_image(512, 512).chunk({"band": -1, "y": 64, "x": 64})
    labels = xlc.predict(img, tiny_package, device="cpu", chunks=None)  # 64 chunks
    heavy = HeavyTasks(len(tiny_package.blob))
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        cluster.scheduler.add_plugin(heavy)
        write_zarr_resumable(labels, tmp_path / "out.zarr", client=client, progress=False)
        counts = client.run(lambda: dict(LOAD_COUNTS))
    # the package's bytes are one task of the job, never copied into each chunk's task
    assert len(heavy.heavy) == 1, heavy.heavy
    # each of the two worker processes built this package exactly once (other packages may
    # show up in workers forked from a test process that loaded them)
    assert [c.get(tiny_package.sha256, 0) for c in counts.values()] == [1, 1]


def test_job_completes_when_a_worker_process_is_killed(tmp_path, tiny_package):
    img = make_image(512, 512, seed=5).chunk({"band": -1, "y": 64, "x": 64})
    labels = xlc.predict(img, tiny_package, device="cpu", chunks=None)
    reference = labels.values
    out = tmp_path / "out.zarr"
    errors: list[BaseException] = []

    def job(client):
        try:
            write_zarr_resumable(labels, out, client=client, progress=False)
        except BaseException as err:  # reported by the assertion below
            errors.append(err)

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        victim = next(iter(client.run(os.getpid).values()))
        runner = threading.Thread(target=job, args=(client,))
        runner.start()
        done = tmp_path / ".out.zarr.partial" / "done"
        deadline = time.monotonic() + 60
        while (
            time.monotonic() < deadline and len(list(done.glob("*")) if done.exists() else []) < 8
        ):
            time.sleep(0.01)
        assert len(list(done.glob("*"))) < 64, "the worker must die mid-job"
        os.kill(victim, signal.SIGKILL)
        runner.join(timeout=120)
    assert not errors and not runner.is_alive()
    np.testing.assert_array_equal(_read(out), reference)


class WriteTasks(SchedulerPlugin):
    """The most chunk writes the scheduler knew at once, and the size of each graph sent."""

    def __init__(self) -> None:
        self.most = 0
        self.graphs: list[int] = []

    def update_graph(self, scheduler, *, keys=(), **kwargs) -> None:
        writes = [k for k in scheduler.tasks if "xlandcover-write" in str(k)]
        self.most = max(self.most, len(writes))
        self.graphs.append(len([k for k in keys if "xlandcover-write" in str(k)]))


def test_regions_are_submitted_with_a_bounded_number_of_chunks_in_flight(
    tmp_path, tiny_package, monkeypatch
):
    from xlandcover.output import _resume

    monkeypatch.setattr(_resume, "REGION_CHUNKS", 2)  # regions of 2 x 2 chunks
    monkeypatch.setattr(_resume, "IN_FLIGHT_PER_THREAD", 3)
    img = make_image(512, 384, seed=4).chunk({"band": -1, "y": 64, "x": 64})  # 8 x 6 chunks
    labels = xlc.predict(img, tiny_package, chunks=None)
    seen = WriteTasks()
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        cluster.scheduler.add_plugin(seen)
        write_zarr_resumable(labels, tmp_path / "out.zarr", client=client, progress=False)
    np.testing.assert_array_equal(_read(tmp_path / "out.zarr"), labels.values)
    write_graphs = [n for n in seen.graphs if n]
    assert write_graphs == [4] * 12  # one small graph per region, 12 regions
    # a region is sent while fewer than 3 chunks are unfinished: at most 3 - 1 + 4 unfinished,
    # plus a finished one whose release is on its way to the scheduler (of 48 in the job)
    assert 4 <= seen.most <= 7


def test_a_job_stopped_in_a_region_resumes_the_others(tmp_path, tiny_package, caplog, monkeypatch):
    from xlandcover.output import _resume

    monkeypatch.setattr(_resume, "REGION_CHUNKS", 2)
    monkeypatch.setattr(_resume, "IN_FLIGHT_PER_THREAD", 2)
    flag = tmp_path / "broken"
    flag.touch()
    img = make_image(512, 512, seed=5).chunk({"band": -1, "y": 64, "x": 64})  # 8 x 8 chunks
    labels = xlc.predict(_flaky(img, flag), tiny_package, chunks=None)
    out = tmp_path / "out.zarr"
    with Client(processes=False, n_workers=1, threads_per_worker=1) as client:
        with pytest.raises(ChunkFailedError, match=r"OSError\('unreadable"):
            write_zarr_resumable(labels, out, client=client, progress=False)
        kept = {p.name for p in (tmp_path / ".out.zarr.partial" / "done").glob("*")}
        # regions after the failing one (chunk (3, 3) is in the 6th region of 16) never ran
        assert 4 <= len(kept) < 32
        assert not kept & {f"{i}-{j}" for i in range(4, 8) for j in range(8)}
        flag.unlink()
        # a chunk write cut short by a kill leaves Zarr's temporary file beside its key
        torn = tmp_path / ".out.zarr.partial" / "store.zarr" / "landcover" / "c" / "7"
        torn.mkdir(parents=True, exist_ok=True)
        (torn / "7.0123456789abcdef0123456789abcdef.partial").write_bytes(b"")
        caplog.set_level(logging.INFO, logger="xlandcover")
        write_zarr_resumable(labels, out, client=client, resume=True, progress=False)
        assert f"{64 - len(kept)} of 64 chunks to compute ({len(kept)} done before)" in caplog.text
        assert "removed 1 chunk writes cut short" in caplog.text
    np.testing.assert_array_equal(_read(out), xlc.predict(img, tiny_package).values)
    assert not (tmp_path / ".out.zarr.partial").exists()
    assert not list(out.rglob("*.partial"))  # nothing torn is published


def test_all_nodata_is_found_from_the_records_without_reading_the_store(
    tmp_path, tiny_package, monkeypatch
):
    from xlandcover.errors import AllNodataError
    from xlandcover.output import _resume

    def never(*args, **kwargs):
        raise AssertionError("the store was read back")

    monkeypatch.setattr(_resume, "_any_valid", never)
    img = make_image(128, 128).chunk({"band": -1, "y": 64, "x": 64})
    with Client(processes=False, n_workers=1, threads_per_worker=1) as client:
        labels = xlc.predict(img, tiny_package, chunks=None)
        write_zarr_resumable(labels, tmp_path / "ok.zarr", client=client, progress=False)
        empty = img.where(False, 0).astype(np.uint8).rio.write_nodata(0)
        labels = xlc.predict(empty, tiny_package, chunks=None)
        with pytest.raises(AllNodataError, match="every pixel of the prediction is nodata"):
            write_zarr_resumable(labels, tmp_path / "empty.zarr", client=client, progress=False)
    assert (tmp_path / "ok.zarr").exists() and not (tmp_path / "empty.zarr").exists()
