"""Batch-job scaling on a local Dask cluster: throughput and worker memory, side by side.

    .venv/bin/python benchmarks/scaling.py [--size 3072] [--chunk 1024] [--quick]

Predicts one synthetic RGB scene with the embedded demo model (U-Net, MobileNetV3-small,
window 512) through the resumable Zarr writer, once per cluster layout on this machine:
1 worker x all cores, 2 workers sharing the cores, and threads in this process. Then the
memory check: the same layout on scenes of 1x, 4x and 16x the pixels (1024², 2048², 4096²) in
512² chunks, reporting the worker's peak RSS. Prints one JSON object; ratios are within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
from importlib import resources
from pathlib import Path

import numpy as np
import psutil
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr

import xlandcover as xlc
from xlandcover.jobs import client_for
from xlandcover.output import write_zarr_resumable


def scene(size: int, chunk: int, folder: Path) -> xr.DataArray:
    """A synthetic RGB scene written to a tiled GeoTIFF and opened lazily, as jobs read data
    (an in-memory array would travel inside the graph to every worker)."""
    path = folder / f"scene-{size}.tif"
    if not path.exists():
        _synthetic(size).rio.to_raster(path, tiled=True, blockxsize=256, blockysize=256)
    return xlc.open_raster(path, chunks=chunk, bands=["red", "green", "blue"])


def _synthetic(size: int) -> xr.DataArray:
    rng = np.random.default_rng(0)
    coarse = rng.integers(30, 220, (3, size // 64 + 1, size // 64 + 1), dtype=np.uint8)
    data = np.repeat(np.repeat(coarse, 64, 1), 64, 2)[:, :size, :size]
    img = xr.DataArray(data, dims=("band", "y", "x"), coords={"band": ["red", "green", "blue"]})
    img = img.rio.write_crs("EPSG:32640")  # 0.5 m aerial-like pixels over Dubai
    return img.assign_coords(x=0.5 * np.arange(size) + 0.25, y=-0.5 * np.arange(size) - 0.25)


class RssSampler:
    """Peak resident memory of some processes, sampled every 50 ms in a thread."""

    def __init__(self, pids: list[int]) -> None:
        self.procs = [psutil.Process(p) for p in pids]
        self.peak = [0.0] * len(pids)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for i, proc in enumerate(self.procs):
                self.peak[i] = max(self.peak[i], proc.memory_info().rss / 2**20)
            time.sleep(0.05)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _warm_up() -> None:
    import xlandcover._torch  # noqa: F401


def run(layout: str, size: int, chunk: int, model: xlc.ModelPackage, out: Path) -> dict:
    workers = {"1 worker": 1, "2 workers": 2}.get(layout)
    labels = xlc.predict(scene(size, chunk, out), model, chunks=None, device="cpu")
    target = out / f"{layout.replace(' ', '-')}-{size}-{time.time_ns()}.zarr"
    scheduler = "inprocess" if workers is None else "local"
    with client_for(scheduler, n_workers=workers) as client:
        pids = list(client.run(os.getpid).values()) if workers is not None else [os.getpid()]
        client.run(_warm_up)  # imports torch/smp: a one-off cost per worker, not throughput
        with RssSampler(pids) as rss:
            start = time.perf_counter()
            write_zarr_resumable(labels, target, client=client, progress=False)
            seconds = time.perf_counter() - start
    mpx = size * size / 1e6
    return {
        "layout": layout,
        "size": size,
        "chunk": chunk,
        "seconds": round(seconds, 2),
        "mpx_per_s": round(mpx / seconds, 4),
        "worker_peak_rss_mib": sorted(round(v, 1) for v in rss.peak),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", type=int, default=3072)
    p.add_argument("--chunks", type=int, default=1024)
    p.add_argument("--memory-base", type=int, default=1024, help="1x scene side (memory)")
    p.add_argument("--quick", action="store_true", help="small scenes, for a smoke run")
    args = p.parse_args()
    size, chunk = (1024, 512) if args.quick else (args.size, args.chunks)
    data = resources.files("xlandcover") / "data"
    with resources.as_file(data / "demo-dubai.xlc") as path:
        model = xlc.load_model(path)
    results: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "ram_gib": round(psutil.virtual_memory().total / 2**30),
            "python": platform.python_version(),
        },
        "model": model.metadata.description,
        "window": model.metadata.window,
    }
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        runs = [run(layout, size, chunk, model, out)
                for layout in ("1 worker", "2 workers", "threads in process")]  # fmt: skip
        results["throughput"] = runs
        one = runs[0]["mpx_per_s"]
        results["ratio_2_workers_over_1"] = round(runs[1]["mpx_per_s"] / one, 3)
        results["ratio_threads_over_1_worker"] = round(runs[2]["mpx_per_s"] / one, 3)
        # at least 2 x 2 chunks of 512 at 1x, so every size runs many chunk tasks
        base = args.memory_base if not args.quick else 512
        memory = [run("1 worker", base * k, 512, model, out) for k in (1, 2, 4)]
        results["memory"] = [
            {"pixels_x": (k * k), "size": m["size"], "peak_rss_mib": m["worker_peak_rss_mib"][0]}
            for k, m in zip((1, 2, 4), memory, strict=True)
        ]
        results["memory_ratio_16x_over_1x"] = round(
            memory[2]["worker_peak_rss_mib"][0] / memory[0]["worker_peak_rss_mib"][0], 3
        )
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
