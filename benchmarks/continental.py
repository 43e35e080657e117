"""Continental jobs by simulation: client memory, time to first chunk and overhead per chunk
for 10^3, 10^4 and 10^5 chunks, side by side.

    .venv/bin/python benchmarks/continental.py [--chunk 128] [--sizes 1000,10000,100000]
        [--full-limit 10000] [--first 3000]

(the figures in docs/scaling.md: ``--full-limit 1024``, about 6 minutes on 2 cores)

The raster is lazy and synthetic: each chunk's pixels are computed from their position
(no files). The model is a zero-cost package (a registered architecture whose forward
returns constant logits), with the window equal to the chunk and no overlap, so each chunk runs
one window and what is measured is the job's machinery: graph, scheduling, halo exchange,
blending and the Zarr write through the resumable writer (region by region). Each size runs in
a fresh process (peak RSS is per process) on a local cluster of 2 worker processes x 1
thread; the scheduler runs in the client's process (as in ``xlandcover predict``), so "client"
memory below is client + scheduler. Jobs above ``--full-limit`` chunks are stopped after
``--first`` chunks: their graph and store are built for the whole extent, the first regions
run, and the per-chunk figures come from those chunks. Prints one JSON object and writes it to
``benchmarks/results/continental-cpu-2core.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "continental-cpu-2core.json"
CLASSES = [
    {"id": 1, "name": "water", "color": "#1f78b4"},
    {"id": 2, "name": "forest", "color": "#33a02c"},
]


def zero_cost(in_channels: int = 3, classes: int = 2, **_: object):
    """A module whose forward is free: constant logits (class 2 everywhere)."""
    from xlandcover._torch import torch

    class Zero(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bias = torch.nn.Parameter(torch.arange(classes, dtype=torch.float32))

        def forward(self, x):
            n, _, h, w = x.shape
            return self.bias.view(1, -1, 1, 1).expand(n, -1, h, w)

    return Zero()


def register() -> None:
    from xlandcover.model import register_architecture

    register_architecture("ZeroCost", zero_cost, replace=True)


def synthetic(rows: int, cols: int, chunk: int):
    """A lazy (3, rows*chunk, cols*chunk) uint8 raster on a 1 m EPSG:5070 grid whose pixels
    are a function of their position: nothing is stored, nothing is read."""
    import dask.array as da
    import rioxarray  # noqa: F401
    import xarray as xr

    def block(block_id=None):  # block_id: block_info builds every chunk's info eagerly
        _, i, j = block_id
        r = np.arange(i * chunk, (i + 1) * chunk, dtype=np.int64)[:, None]
        c = np.arange(j * chunk, (j + 1) * chunk, dtype=np.int64)[None, :]
        base = (r * 7 + c * 13) % 200 + 20
        return np.stack([base, (base + 40) % 230, (base + 90) % 230]).astype(np.uint8)

    data = da.map_blocks(block, chunks=((3,), (chunk,) * rows, (chunk,) * cols), dtype=np.uint8)
    h, w = rows * chunk, cols * chunk
    img = xr.DataArray(
        data,
        dims=("band", "y", "x"),
        coords={
            "band": ["red", "green", "blue"],
            "y": 3_100_000.0 - (np.arange(h) + 0.5),
            "x": -2_300_000.0 + (np.arange(w) + 0.5),
        },
    )
    return img.rio.write_crs("EPSG:5070")


class _Enough(Exception):
    """Stops a job after the chunks to measure."""


def one(n: int, chunk: int, first: int | None, folder: Path) -> dict:
    """One job of about ``n`` chunks in this process."""
    import psutil
    from distributed.diagnostics.plugin import WorkerPlugin

    sys.path.insert(0, str(Path(__file__).parent))
    from scaling import RssSampler

    import xlandcover as xlc
    from xlandcover.jobs import client_for
    from xlandcover.output import _resume, write_zarr_resumable

    register()
    side = round(math.sqrt(n))
    img = synthetic(side, side, chunk)
    package = xlc.save_model(zero_cost(), folder / "zero.xlc", bands=["red", "green", "blue"],
                             classes=CLASSES, window=chunk, overlap=0, architecture="ZeroCost",
                             arch_kwargs={"in_channels": 3, "classes": 2})  # fmt: skip

    class Register(WorkerPlugin):
        def setup(self, worker):
            register()

    times: list[float] = []
    real_update = _resume.ChunkProgress.update

    def update(self, pixels: int) -> None:
        times.append(time.perf_counter())
        if first is not None and len(times) >= first:
            raise _Enough
        real_update(self, pixels)

    _resume.ChunkProgress.update = update  # type: ignore[method-assign]
    me = psutil.Process()
    with client_for("local", n_workers=2, threads_per_worker=1) as client:
        client.register_plugin(Register())
        pids = list(client.run(os.getpid).values())
        client.run(lambda: __import__("xlandcover._torch"))  # a one-off cost per worker
        base_rss = me.memory_info().rss / 2**20
        with RssSampler([me.pid, *pids]) as rss:
            start = time.perf_counter()
            labels = xlc.predict(img, package, chunks=None, device="cpu")
            graph_s = time.perf_counter() - start
            stopped = False
            try:
                write_zarr_resumable(labels, folder / "out.zarr", client=client, progress=False)
            except _Enough:
                stopped = True
            end = time.perf_counter()
    graph = _resume.write_graph(labels.data, folder / "x", "landcover", folder / "d")
    region = [(graph.name, i, j) for i in range(8) for j in range(8)]
    culled = dict(graph.__dask_graph__().cull(set(region)))
    steady = np.diff(times[len(times) // 10 :]) if len(times) > 20 else np.diff(times)
    return {
        "chunks": side * side,
        "chunk_px": chunk,
        "pixels": side * side * chunk * chunk,
        "chunks_written": len(times),
        "whole_job": not stopped,
        "predict_graph_s": round(graph_s, 4),
        "time_to_first_chunk_s": round(times[0] - start, 3),
        "wall_s": round(end - start, 2),
        "s_per_chunk_steady": round(float(np.median(steady)) if len(steady) else 0.0, 5),
        "s_per_chunk_mean": round((times[-1] - times[0]) / max(1, len(times) - 1), 5),
        # the median per 500 chunks written, in order: a job that slows as it goes shows here
        "s_per_chunk_by_500": [
            round(float(np.median(np.diff(times[k : k + 501]))), 5)
            for k in range(0, len(times) - 1, 500)
        ],
        "tasks_per_chunk_in_a_region": round(len(culled) / len(region), 2),
        "client_scheduler_rss_before_mib": round(base_rss, 1),
        "client_scheduler_peak_rss_mib": round(rss.peak[0], 1),
        "worker_peak_rss_mib": [round(v, 1) for v in rss.peak[1:]],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--chunk", type=int, default=128, help="chunk (and window) side in pixels")
    p.add_argument("--sizes", default="1000,10000,100000", help="job sizes in chunks")
    p.add_argument("--full-limit", type=int, default=10_000, help="larger jobs are stopped")
    p.add_argument("--first", type=int, default=3000, help="chunks measured of those")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)
    p.add_argument("--stop-after", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one is not None:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(one(args.one, args.chunk, args.stop_after, Path(tmp))))
        return
    runs = []
    for n in (int(v) for v in args.sizes.split(",")):
        cmd = [sys.executable, __file__, "--one", str(n), "--chunk", str(args.chunk)]
        if n > args.full_limit:
            cmd += ["--stop-after", str(args.first)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(runs[-1]), file=sys.stderr)
    small, large = runs[0], runs[-1]
    results = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "setup": (
            "lazy synthetic uint8 RGB raster (pixels from position), zero-cost model, window = "
            f"chunk = {args.chunk} px, overlap 0, local cluster 2 workers x 1 thread, "
            "resumable Zarr writer (regions of 8 x 8 chunks); jobs above "
            f"{args.full_limit} chunks stopped after {args.first} chunks"
        ),
        "runs": runs,
        "ratio_largest_over_smallest": {
            "chunks": round(large["chunks"] / small["chunks"], 1),
            "client_scheduler_peak_rss": round(
                large["client_scheduler_peak_rss_mib"] / small["client_scheduler_peak_rss_mib"], 3
            ),
            "s_per_chunk_steady": round(
                large["s_per_chunk_steady"] / small["s_per_chunk_steady"], 3
            ),
            "time_to_first_chunk": round(
                large["time_to_first_chunk_s"] / small["time_to_first_chunk_s"], 3
            ),
        },
    }
    text = json.dumps(results, indent=1)
    print(text)
    RESULTS.write_text(text + "\n")


if __name__ == "__main__":
    main()
