"""What xlandcover itself costs per window, around the model; prints and saves JSON.

(1) Host-side cost per 512 px window with a zero-cost model (its forward returns precomputed
    logits: a pool of distinct windows, cycled, so no batch size reads cached memory that
    another does not): ``predict -> to_zarr`` of an in-memory 4096² 4-band uint16 scene,
    8 classes, the package's overlap (64 px), at batch sizes 1, 16 and 64. Everything but the
    model remains: window enumeration, conversion and normalisation, softmax, blending,
    argmax, copies, writing. Milliseconds per window run.
(2) End-to-end ``predict -> to_zarr`` with a real U-Net/ResNet-34 (random weights) on a 2048²
    scene against its forward alone over the same windows at the same batch size (the module
    called on pre-normalised channels-last tensors, nothing else). The model is built before
    either is timed; whole-process figures are in ``predict_throughput.py``.

Every measurement runs in a child process, repeated and interleaved (batch 1, 16, 64, 1, ...),
so that the ratios compare runs made side by side on a shared machine; medians are reported.
``--compare REF`` also measures the engine of git revision REF (extracted to a temporary
folder) in the same interleaved rounds, for a before/after in one run::

    python benchmarks/pipeline_overhead.py                   # current tree
    python benchmarks/pipeline_overhead.py --compare main    # and main's engine, side by side
    python benchmarks/pipeline_overhead.py --quick           # small smoke run
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
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BANDS = ["blue", "green", "red", "nir"]
CLASSES = 8


def scene(side: int):  # type: ignore[no-untyped-def]
    """An in-memory 4-band uint16 scene: smooth structure plus noise, on a 1 m UTM grid."""
    import rioxarray  # noqa: F401
    import xarray as xr

    rng = np.random.default_rng(0)
    coarse = rng.integers(2000, 14000, (4, side // 64 + 1, side // 64 + 1))
    data = np.repeat(np.repeat(coarse, 64, 1), 64, 2)[:, :side, :side]
    data = (data + rng.integers(0, 2000, data.shape)).astype(np.uint16)
    img = xr.DataArray(
        data,
        dims=("band", "y", "x"),
        coords={"band": BANDS, "y": -np.arange(side) - 0.5, "x": np.arange(side) + 0.5},
    )
    return img.rio.write_crs("EPSG:32612")


def package(path: Path, encoder: str):  # type: ignore[no-untyped-def]
    import xlandcover as xlc
    from xlandcover._torch import smp, torch

    torch.manual_seed(0)
    net = smp.Unet(encoder, encoder_weights=None, in_channels=4, classes=CLASSES)
    return xlc.save_model(
        net,
        path,
        bands=BANDS,
        classes=[{"id": i + 1, "name": f"class{i + 1}"} for i in range(CLASSES)],
        normalization={"mean": [8000.0] * 4, "std": [2000.0] * 4},
        window=512,
        overlap=64,
        overwrite=True,
    )


def zero_cost_model(window: int, pool: int):  # type: ignore[no-untyped-def]
    from xlandcover._torch import torch

    class ZeroCost(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = SimpleNamespace(output_stride=32)
            g = torch.Generator().manual_seed(0)
            logits = torch.randn((pool, CLASSES, window, window), generator=g) * 3
            self.logits = logits.contiguous(memory_format=torch.channels_last)  # as on CPU
            self.next = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            n = x.shape[0]
            if self.next + n > len(self.logits):
                self.next = 0
            self.next += n
            return self.logits[self.next - n : self.next]

    return ZeroCost()


def windows_of(side: int, overlap: int) -> int:
    from xlandcover.prediction._windows import axis_grid

    return len(axis_grid(side, window=512, overlap=overlap, multiple=32).starts) ** 2


def child_host(args: argparse.Namespace) -> dict:
    """(1) in this process: ms per window with the zero-cost model."""
    import dask

    import xlandcover as xlc
    from xlandcover import runtime

    dask.config.set(scheduler="threads")
    with tempfile.TemporaryDirectory() as tmp:
        pkg = package(Path(tmp) / "m.xlc", "resnet18")
        fake = zero_cost_model(512, 64)
        runtime._CACHE[(pkg.sha256, "cpu")] = runtime.LoadedModel(
            module=fake, device="cpu", lock=threading.Lock(), size_multiple=32
        )
        img = scene(args.side)
        labels = xlc.predict(img, pkg, batch_size=args.batch, device="cpu")
        start, cpu = time.perf_counter(), time.process_time()
        labels.landcover.to_zarr(Path(tmp) / "out.zarr")
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    n = windows_of(args.side, 64)
    return {
        "ms_per_window": 1000 * seconds / n,
        "cpu_ms_per_window": 1000 * cpu / n,
        "windows": n,
        "xlandcover": xlc.__file__,
    }


def child_real(args: argparse.Namespace) -> dict:
    """(2) in this process: forward alone, then end-to-end, same windows and batch."""
    import dask

    import xlandcover as xlc
    from xlandcover._torch import torch
    from xlandcover.model._runtime import get_model

    dask.config.set(scheduler="threads")
    with tempfile.TemporaryDirectory() as tmp:
        pkg = package(Path(tmp) / "m.xlc", args.encoder)
        loaded = get_model(pkg, pkg.sha256, "cpu")  # built before anything is timed
        n = windows_of(args.side, 64)
        x = torch.randn((args.batch, 4, 512, 512)).contiguous(memory_format=torch.channels_last)

        def run() -> float:
            with torch.inference_mode():
                loaded.module(x)  # warm-up
                start = time.perf_counter()
                for _ in range(-(-n // args.batch)):
                    loaded.module(x)
                return time.perf_counter() - start

        # in a worker thread, as predict's Dask tasks run (on a busy CPU the main thread's
        # OpenMP team was measured 2x slower than a fresh thread's)
        with ThreadPoolExecutor(1) as pool:
            forward = pool.submit(run).result()
        img = scene(args.side)
        # a small run first: imports (zarr...) and Dask's thread pool are not the pipeline
        small = img.isel(y=slice(0, 512), x=slice(0, 512))
        xlc.predict(small, pkg, batch_size=args.batch).landcover.to_zarr(Path(tmp) / "w.zarr")
        start = time.perf_counter()
        labels = xlc.predict(img, pkg, batch_size=args.batch, device="cpu")
        labels.landcover.to_zarr(Path(tmp) / "out.zarr")
        end_to_end = time.perf_counter() - start
    return {
        "windows": n,
        "forward_s_per_window": forward / n,
        "end_to_end_s_per_window": end_to_end / n,
        "ratio_end_to_end_over_forward": forward / end_to_end,
    }


def run_child(kind: str, tree: Path | None, **kw: object) -> dict:
    env = dict(os.environ)
    if tree is not None:  # another revision's xlandcover, ahead of the installed one
        env["PYTHONPATH"] = str(tree) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, __file__, "--child", kind]
    for key, value in kw.items():
        cmd += [f"--{key}", str(value)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def extract(ref: str, folder: Path) -> Path:
    """The ``xlandcover`` package of git revision ``ref``, extracted into ``folder``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "xlandcover"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def machine() -> str:
    cores = len(os.sched_getaffinity(0))
    return f"cpu-{cores}core"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small scenes, one round")
    parser.add_argument("--compare", metavar="REF", help="also measure git revision REF")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repeats of (1)")
    parser.add_argument("--real-rounds", type=int, default=2, help="repeats of (2)")
    parser.add_argument("--real-batches", default="1,4", help="batch sizes of (2)")
    parser.add_argument("--skip-real", action="store_true", help="only (1)")
    parser.add_argument("--out", type=Path, help="JSON path (default: benchmarks/results/)")
    parser.add_argument("--child", choices=["host", "real"], help=argparse.SUPPRESS)
    parser.add_argument("--side", type=int, default=4096, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--encoder", default="resnet34", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = child_host(args) if args.child == "host" else child_real(args)
        print(json.dumps(result))
        return

    host_side, real_side = (1024, 1024) if args.quick else (4096, 2048)
    rounds, real_rounds = (1, 1) if args.quick else (args.rounds, args.real_rounds)
    encoder = "resnet18" if args.quick else "resnet34"
    batches = (1, 16, 64)
    real_batches = [int(b) for b in args.real_batches.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        trees: dict[str, Path | None] = {"current": None}
        if args.compare:
            trees[f"before ({args.compare})"] = extract(args.compare, Path(tmp))
        host: dict[str, dict[int, list[float]]] = {name: {b: [] for b in batches} for name in trees}
        cpu: dict[str, dict[int, list[float]]] = {name: {b: [] for b in batches} for name in trees}
        load: list[float] = []
        for _ in range(rounds):
            for b in batches:
                for name, tree in trees.items():
                    load.append(os.getloadavg()[0])
                    r = run_child("host", tree, side=host_side, batch=b)
                    host[name][b].append(r["ms_per_window"])
                    cpu[name][b].append(r["cpu_ms_per_window"])
                    print(f"host {name} batch {b}: {r['ms_per_window']:.1f} ms", file=sys.stderr)
        real: dict[str, dict[int, list[dict]]] = {n: {b: [] for b in real_batches} for n in trees}
        for _ in range(0 if args.skip_real else real_rounds):
            for b in real_batches:
                for name, tree in trees.items():
                    r = run_child("real", tree, side=real_side, batch=b, encoder=encoder)
                    real[name][b].append(r)
                    print(f"real {name} batch {b}: {r}", file=sys.stderr)

    def med(values: list[float], digits: int = 2) -> float:
        return round(statistics.median(values), digits)

    result: dict[str, object] = {
        "machine": f"{platform.machine()} x{len(os.sched_getaffinity(0))} cores",
        "date": time.strftime("%Y-%m-%d"),
        "load_average_during_1": [round(min(load), 2), round(max(load), 2)],
        "host_scene_px": [host_side, host_side],
        "windows_per_host_run": windows_of(host_side, 64),
        "host_ms_per_window": {str(b): med(host["current"][b]) for b in batches},
        "host_ms_per_window_runs": {str(b): host["current"][b] for b in batches},
        # process CPU time (all threads) per window: less disturbed by other load than wall
        "host_cpu_ms_per_window": {str(b): med(cpu["current"][b]) for b in batches},
    }
    cur = result["host_ms_per_window"]
    assert isinstance(cur, dict)
    result["ratio_host_64_over_1"] = round(cur["64"] / cur["1"], 3)
    for name in trees:
        if name == "current":
            continue
        before = {str(b): med(host[name][b]) for b in batches}
        result["host_ms_per_window_before"] = before
        result["host_ms_per_window_before_runs"] = {str(b): host[name][b] for b in batches}
        result["host_cpu_ms_per_window_before"] = {str(b): med(cpu[name][b]) for b in batches}
        result["before"] = name
        result["ratio_host_before_over_current"] = {b: round(before[b] / cur[b], 3) for b in cur}
    real_out: dict[str, object] = {"model": f"Unet/{encoder}", "scene_px": [real_side] * 2}
    for name in [] if args.skip_real else trees:
        key = "current" if name == "current" else "before"
        real_out[key] = {
            str(b): {
                "forward_s_per_window": med([r["forward_s_per_window"] for r in runs], 4),
                "end_to_end_s_per_window": med([r["end_to_end_s_per_window"] for r in runs], 4),
                "ratio_end_to_end_over_forward": med(
                    [r["ratio_end_to_end_over_forward"] for r in runs], 3
                ),
                "ratio_runs": [round(r["ratio_end_to_end_over_forward"], 3) for r in runs],
            }
            for b, runs in real[name].items()
        }
    if not args.skip_real:
        result["real_model"] = real_out
    text = json.dumps(result, indent=2)
    print(text)
    out = args.out or ROOT / "benchmarks" / "results" / f"pipeline_overhead-{machine()}.json"
    if not args.quick or args.out:
        out.write_text(text + "\n")


if __name__ == "__main__":
    main()
