"""The Python half of ``benchmarks/gpu_check.sh``: predict on a GPU, measured; prints JSON.

U-Net/ResNet-34 (random weights: speed does not depend on them), 512 px windows, the auto
batch size and precision of predict (bf16 where the GPU has it):

* forward alone: the module called on pre-normalised channels-last batches, under the same
  autocast, over as many windows as the end-to-end scene needs;
* end to end: ``predict -> to_zarr`` of an in-memory NAIP-like scene (4 bands, uint8, 1 m),
  at xlandcover's defaults, with the GPU's utilisation sampled by ``nvidia-smi`` meanwhile;
* km²/h for NAIP-like 1 m imagery and for Sentinel-2-like imagery (10 bands, uint16, 10 m);
* xlandcover's defaults against the hand-written loop of ``predict_throughput.py`` (batch 1,
  50 % overlap, whole-scene arrays), the model on the GPU;
* Dask-CUDA: ``client_for("local")`` (one worker per GPU) over a lazily read GeoTIFF.

Without a GPU it runs the same steps on CPU at small sizes (and says what it skipped), so the
script is exercised wherever the tests run. Usage::

    python benchmarks/gpu_check.py [--out FOLDER] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

NAIP_BANDS = ["red", "green", "blue", "nir"]
S2_BANDS = ["B02", "B03", "B04", "B08", "B05", "B06", "B07", "B8A", "B11", "B12"]


def make_package(path: Path, bands: list[str], encoder: str, mean: float, std: float):  # type: ignore[no-untyped-def]
    import xlandcover as xlc
    from xlandcover._torch import smp, torch

    torch.manual_seed(0)
    net = smp.Unet(encoder, encoder_weights=None, in_channels=len(bands), classes=8)
    return xlc.save_model(
        net,
        path,
        bands=bands,
        classes=[{"id": i + 1, "name": f"class{i + 1}"} for i in range(8)],
        normalization={"mean": [mean] * len(bands), "std": [std] * len(bands)},
        window=512,
        overlap=64,
        overwrite=True,
    )


def make_scene(side: int, bands: list[str], dtype: Any, pixel_m: float):  # type: ignore[no-untyped-def]
    """Smooth structure plus noise, on a UTM grid of ``pixel_m`` metre pixels."""
    import rioxarray  # noqa: F401
    import xarray as xr

    rng = np.random.default_rng(0)
    hi = 255 if dtype == np.uint8 else 10000
    coarse = rng.integers(0, hi // 2, (len(bands), side // 64 + 1, side // 64 + 1), dtype=dtype)
    data = np.repeat(np.repeat(coarse, 64, 1), 64, 2)[:, :side, :side]
    data += rng.integers(0, hi // 2, data.shape, dtype=dtype)
    coords = {
        "band": bands,
        "y": 4_000_000 - pixel_m * (np.arange(side) + 0.5),
        "x": 400_000 + pixel_m * (np.arange(side) + 0.5),
    }
    img = xr.DataArray(data, dims=("band", "y", "x"), coords=coords)
    return img.rio.write_crs("EPSG:32611")


class GpuSampler:
    """GPU utilisation (%) from ``nvidia-smi``, every 100 ms, while in the ``with`` block."""

    def __init__(self) -> None:
        self.samples: list[list[float]] = []
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> GpuSampler:
        try:
            self._proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                 "-lms", "100"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )  # fmt: skip
        except FileNotFoundError:
            return self
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        row: list[float] = []
        gpus = _gpu_count()
        for line in self._proc.stdout:
            try:
                row.append(float(line.strip()))
            except ValueError:
                continue
            if len(row) == gpus:
                self.samples.append(row)
                row = []

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def summary(self) -> dict[str, Any] | str:
        if self._proc is None:
            return "not measured: no nvidia-smi here"
        if not self.samples:
            return "not measured: nvidia-smi gave no samples"
        per_gpu = list(zip(*self.samples, strict=True))
        return {
            "samples": len(self.samples),
            "mean_percent_per_gpu": [round(statistics.fmean(g), 1) for g in per_gpu],
            "median_percent_per_gpu": [statistics.median(g) for g in per_gpu],
        }


def _gpu_count() -> int:
    from xlandcover.jobs._cluster import gpu_count

    return gpu_count()


def _sync(device: str) -> None:
    from xlandcover._torch import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def grid_windows(side: int, overlap: int) -> int:
    from xlandcover.prediction._windows import axis_grid

    return len(axis_grid(side, window=512, overlap=overlap, multiple=32).starts) ** 2


def forward_alone(package, device: str, windows: int) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The module alone over ``windows`` windows at predict's auto batch size and precision."""
    from xlandcover import _engine
    from xlandcover._torch import torch
    from xlandcover.model._runtime import auto_batch_size, get_model, resolve_precision

    loaded = get_model(package, package.sha256, device)
    precision = resolve_precision("auto", device)
    bands = len(package.metadata.bands)
    batch = auto_batch_size(loaded, package.sha256, (bands, 512, 512), precision)
    x = torch.randn((batch, bands, 512, 512), device=device)
    x = x.contiguous(memory_format=torch.channels_last)
    batches = -(-windows // batch)

    def run() -> float:
        with torch.inference_mode():
            _engine.forward(loaded, x, precision)  # warm-up (cuDNN picks its algorithms)
            _sync(device)
            start = time.perf_counter()
            for _ in range(batches):
                _engine.forward(loaded, x, precision)
            _sync(device)
            return time.perf_counter() - start

    # in a worker thread, as predict's tasks run: on a busy CPU the main thread's OpenMP
    # team was measured 2x slower than a fresh thread's
    with ThreadPoolExecutor(1) as pool:
        seconds = pool.submit(run).result()
    return {
        "batch_size": batch,
        "precision": precision,
        "windows": batches * batch,
        "windows_per_s": batches * batch / seconds,
    }


def end_to_end(img, package, device: str, out: Path, **kw: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """``predict -> to_zarr`` of an in-memory scene; utilisation sampled meanwhile."""
    import xlandcover as xlc
    from xlandcover.prediction._windows import axis_grid

    meta = package.metadata
    overlap = kw.get("overlap", meta.overlap)
    rows = axis_grid(img.sizes["y"], window=512, overlap=overlap, multiple=32)
    cols = axis_grid(img.sizes["x"], window=512, overlap=overlap, multiple=32)
    labels = xlc.predict(img, package, device=device, **kw)
    with GpuSampler() as gpu:
        start = time.perf_counter()
        labels.landcover.to_zarr(out, overwrite=True)
        seconds = time.perf_counter() - start
    n = len(rows.starts) * len(cols.starts)
    mpx = img.sizes["y"] * img.sizes["x"] / 1e6
    return {
        "seconds": seconds,
        "grid_windows": n,
        "windows_per_s": n / seconds,
        "scene_mpx_per_s": mpx / seconds,
        "gpu_utilisation": gpu.summary(),
    }


def handwritten_on(device: str, img, package) -> float:  # type: ignore[no-untyped-def]
    """predict_throughput.py's hand-written loop with the model on ``device``: seconds."""
    from xlandcover._torch import torch

    start = time.perf_counter()
    model = package.build_module(device)
    mean = np.asarray(package.metadata.mean, np.float32)[:, None, None]
    std = np.asarray(package.metadata.std, np.float32)[:, None, None]
    image = (img.values.astype(np.float32) - mean) / std
    _, h, w = image.shape
    window, stride = 512, 256
    probs = np.zeros((len(package.classes), h, w), np.float32)
    count = np.zeros((h, w), np.float32)
    ys = sorted({min(y, h - window) for y in range(0, h, stride)})
    xs = sorted({min(x, w - window) for x in range(0, w, stride)})
    with torch.no_grad():
        for y in ys:
            for x in xs:
                tile = torch.from_numpy(image[None, :, y : y + window, x : x + window].copy())
                p = model(tile.to(device)).softmax(1)[0].cpu().numpy()
                probs[:, y : y + window, x : x + window] += p
                count[y : y + window, x : x + window] += 1
    (probs / count).argmax(0).astype(np.uint8)
    return time.perf_counter() - start


def dask_cuda(img, package, folder: Path) -> dict[str, Any] | str:  # type: ignore[no-untyped-def]
    """Dask-CUDA, one worker per GPU, over a lazily read GeoTIFF of ``img``."""
    if _gpu_count() == 0:
        return "not measured: no GPU here"
    try:
        import dask_cuda  # noqa: F401
    except ImportError as err:
        return f"not measured: dask-cuda does not import ({err})"
    import xlandcover as xlc
    from xlandcover.jobs._cluster import client_for
    from xlandcover.output._resume import write_zarr_resumable

    path = folder / "dask-cuda.tif"
    img.rio.to_raster(path, tiled=True, blockxsize=512, blockysize=512)
    lazy = xlc.open_raster(path, chunks=4096, bands=NAIP_BANDS)
    labels = xlc.predict(lazy, package, chunks=None)
    with client_for("local") as client:
        workers = len(client.scheduler_info()["workers"])
        client.run(lambda: __import__("xlandcover._torch"))  # imports are not throughput
        with GpuSampler() as gpu:
            start = time.perf_counter()
            write_zarr_resumable(labels, folder / "dask-cuda.zarr", client=client, progress=False)
            seconds = time.perf_counter() - start
    return {
        "workers": workers,
        "gpus": _gpu_count(),
        "chunks": labels.data.npartitions,
        "scene_mpx_per_s": img.sizes["y"] * img.sizes["x"] / 1e6 / seconds,
        "gpu_utilisation": gpu.summary(),
    }


def environment(device: str) -> dict[str, Any]:
    from xlandcover._torch import torch
    from xlandcover.model._runtime import resolve_precision

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cpu_cores": len(os.sched_getaffinity(0)),
        "device": device,
        "gpus": _gpu_count(),
        "precision_auto": resolve_precision("auto", device),
    }
    if device.startswith("cuda"):
        env["gpu_name"] = torch.cuda.get_device_name(0)
        env["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30)
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, help="folder for the JSON (default: $OUT, else "
                        "benchmarks/results)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="small sizes (default without GPU)")
    args = parser.parse_args()
    import dask

    dask.config.set(scheduler="threads")
    from xlandcover.model._runtime import resolve_device

    device = resolve_device("auto")
    gpu = device.startswith("cuda")
    quick = args.quick or not gpu
    encoder = "resnet18" if quick and not gpu else "resnet34"
    naip_side, s2_side, hand_side = (1024, 512, 1024) if quick else (16384, 8192, 4096)
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "environment": environment(device),
        "model": f"Unet/{encoder}, 8 classes, window 512",
        "sizes": {"naip_px": naip_side, "sentinel2_px": s2_side, "handwritten_px": hand_side},
    }
    if not gpu:
        result["note"] = "no GPU here: CPU at small sizes, to exercise the script; not GPU figures"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        naip = make_package(folder / "naip.xlc", NAIP_BANDS, encoder, 120.0, 50.0)
        img = make_scene(naip_side, NAIP_BANDS, np.uint8, 1.0)
        fwd = forward_alone(naip, device, grid_windows(naip_side, naip.metadata.overlap))
        # one small run first: imports, cuDNN's choices and the batch-size probe are not
        # throughput
        end_to_end(img.isel(y=slice(0, 1024), x=slice(0, 1024)), naip, device, folder / "w.zarr")
        e2e = end_to_end(img, naip, device, folder / "naip.zarr")
        result["naip_forward_alone"] = fwd
        result["naip_end_to_end_defaults"] = e2e
        result["ratio_end_to_end_over_forward"] = e2e["windows_per_s"] / fwd["windows_per_s"]
        result["naip_1m_km2_per_h"] = e2e["scene_mpx_per_s"] * 3600 * 1.0
        print(json.dumps(result, indent=1), file=sys.stderr)

        s2 = make_package(folder / "s2.xlc", S2_BANDS, encoder, 1500.0, 1000.0)
        s2_img = make_scene(s2_side, S2_BANDS, np.uint16, 10.0)
        end_to_end(s2_img.isel(y=slice(0, 512), x=slice(0, 512)), s2, device, folder / "w2.zarr")
        s2_e2e = end_to_end(s2_img, s2, device, folder / "s2.zarr")
        result["sentinel2_end_to_end_defaults"] = s2_e2e
        result["sentinel2_10m_km2_per_h"] = s2_e2e["scene_mpx_per_s"] * 3600 * 100.0

        small = img.isel(y=slice(0, hand_side), x=slice(0, hand_side))
        hand = handwritten_on(device, small, naip)
        ours = end_to_end(small, naip, device, folder / "small.zarr")
        result["handwritten_loop"] = {
            "scene_px": hand_side,
            "handwritten_mpx_per_s": hand_side**2 / 1e6 / hand,
            "xlandcover_defaults_mpx_per_s": ours["scene_mpx_per_s"],
            "ratio_xlandcover_defaults_over_handwritten": hand / ours["seconds"],
        }
        result["dask_cuda"] = dask_cuda(img, naip, folder)
    text = json.dumps(result, indent=1)
    print(text)
    folder_out = args.out or Path(os.environ.get("OUT") or ROOT / "benchmarks" / "results")
    folder_out.mkdir(parents=True, exist_ok=True)
    name = "gpu" if gpu else "cpu-fallback"
    (folder_out / f"gpu_check-{name}.json").write_text(text + "\n")
    print(f"wrote {folder_out / f'gpu_check-{name}.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
