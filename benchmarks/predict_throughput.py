"""Predict throughput and memory, measured side by side in one run; prints JSON.

(a) pure model forward throughput over exactly the windows a scene needs (pre-normalised
    tensors in memory, default batch size): no I/O, no blending, no halo;
(b) end-to-end ``open_raster -> predict -> to_zarr`` at the same overlap as (a), and at
    xlandcover's defaults;
(c) the common hand-written approach: read the whole scene, batch-1 forward per window, 50 %
    overlap, whole-scene probability and count arrays, argmax, write a GeoTIFF;
(d) peak RSS of the end-to-end predict (own process each) for scenes of 1x, 4x and 16x the
    pixels at a fixed chunk size;
(e) whole processes, each its own, for a 2048² scene with 512 px windows at 50 % overlap (and
    xlandcover also at its defaults), timed from process start to exit, so fixed costs show:
    imports, reading the package, building the model, the graph, reading and writing. The
    forward-only process builds the model and runs it over the scene's windows; the
    hand-written one is (c). ``--compare REF`` adds xlandcover processes running git revision
    REF's package (extracted to a temporary folder), interleaved with the current ones.

All scenes are mosaics of the real Landsat 8 Zion scene (mirrored tiles, 4 bands). Throughput
is in Mpx/s of *scene* pixels. Usage::

    python benchmarks/predict_throughput.py            # U-Net/ResNet-34, 512 px windows
    python benchmarks/predict_throughput.py --quick    # tiny model and scene (smoke test)
    python benchmarks/predict_throughput.py --only e --compare main  # (e), before and after
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from xlandcover.prediction import AUTO_CHUNK_WINDOWS

ROOT = Path(__file__).resolve().parents[1]
ZION = ROOT.parent / "shared" / "data" / "zion-landsat8-nlcd" / "landsat8_b2345_stack.tif"
BANDS = ["blue", "green", "red", "nir"]


def make_scene(path: Path, height: int, width: int) -> Path:
    """A tiled GeoTIFF of ``height x width`` px: the Zion scene mirrored tile after tile."""
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(ZION) as src:
        base = src.read()
        profile = src.profile
    base = np.where(base == 65535, 0, base).astype(np.uint16)  # no nodata in the benchmark
    profile.update(
        height=height,
        width=width,
        tiled=True,
        blockxsize=512,
        blockysize=512,
        compress="deflate",
        nodata=None,
    )
    _, bh, bw = base.shape
    with rasterio.open(path, "w", **profile) as dst:
        for y in range(0, height, 1024):
            for x in range(0, width, 1024):
                h, w = min(1024, height - y), min(1024, width - x)
                rows = _mirror_index(np.arange(y, y + h), bh)
                cols = _mirror_index(np.arange(x, x + w), bw)
                dst.write(base[:, rows][:, :, cols], window=Window(x, y, w, h))
    return path


def _mirror_index(i: np.ndarray, n: int) -> np.ndarray:
    period = 2 * n
    j = i % period
    return np.where(j < n, j, period - 1 - j)


def make_package(path: Path, quick: bool):  # type: ignore[no-untyped-def]
    import xlandcover as xlc
    from xlandcover._torch import smp, torch

    torch.manual_seed(0)
    if quick:
        net = smp.Unet(
            "tu-test_efficientnet",
            encoder_weights=None,
            in_channels=4,
            classes=8,
            decoder_channels=(16, 8, 8, 8, 8),
        )
        window = 128
    else:
        net = smp.Unet("resnet34", encoder_weights=None, in_channels=4, classes=8)
        window = 512
    return xlc.save_model(
        net,
        path,
        bands=BANDS,
        classes=[{"id": i + 1, "name": f"class{i + 1}"} for i in range(8)],
        normalization={"mean": [8000.0] * 4, "std": [2000.0] * 4},
        window=window,
        overlap=window // 8,
        overwrite=True,
    )


def forward_only(package, height: int, width: int, window: int, overlap: int) -> float:  # type: ignore[no-untyped-def]
    """(a): seconds to run the model over every window of the scene grid, nothing else: the
    module called on pre-normalised channels-last tensors at predict's default batch size
    (1 on CPU), in a worker thread as predict's tasks run (no softmax, no copies)."""
    from concurrent.futures import ThreadPoolExecutor

    from xlandcover._torch import torch
    from xlandcover.model._runtime import get_model
    from xlandcover.prediction._windows import axis_grid

    loaded = get_model(package, package.sha256, "cpu")
    rows = axis_grid(height, window=window, overlap=overlap, multiple=loaded.size_multiple)
    cols = axis_grid(width, window=window, overlap=overlap, multiple=loaded.size_multiple)
    n = len(rows.starts) * len(cols.starts)
    tiles = torch.randn((1, 4, rows.window, cols.window))
    tiles = tiles.contiguous(memory_format=torch.channels_last)

    def run() -> float:
        with torch.inference_mode():
            loaded.module(tiles)  # warm-up
            start = time.perf_counter()
            for _ in range(n):
                loaded.module(tiles)
            return time.perf_counter() - start

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


def end_to_end(scene: Path, model: Path, out: Path, **kw) -> float:  # type: ignore[no-untyped-def]
    """(b): seconds for open_raster -> predict -> to_zarr."""
    import xlandcover as xlc

    start = time.perf_counter()
    chunk = kw.pop("chunk", 2048)
    img = xlc.open_raster(scene, chunks=chunk, bands=BANDS)
    labels = img.landcover.predict(xlc.load_model(model), **kw)
    labels.landcover.to_zarr(out, overwrite=True)
    return time.perf_counter() - start


def handwritten(scene: Path, package, out: Path, window: int) -> float:  # type: ignore[no-untyped-def]
    """(c): the usual notebook loop, timed end to end."""
    import rasterio

    from xlandcover._torch import torch

    start = time.perf_counter()
    model = package.build_module()
    mean = np.asarray(package.metadata.mean, np.float32)[:, None, None]
    std = np.asarray(package.metadata.std, np.float32)[:, None, None]
    with rasterio.open(scene) as src:
        image = (src.read().astype(np.float32) - mean) / std
        profile = src.profile
    _, h, w = image.shape
    probs = np.zeros((len(package.classes), h, w), np.float32)
    count = np.zeros((h, w), np.float32)
    stride = window // 2
    ys = sorted({min(y, h - window) for y in range(0, h, stride)})
    xs = sorted({min(x, w - window) for x in range(0, w, stride)})
    with torch.no_grad():
        for y in ys:
            for x in xs:
                tile = torch.from_numpy(image[None, :, y : y + window, x : x + window].copy())
                probs[:, y : y + window, x : x + window] += model(tile).softmax(1)[0].numpy()
                count[y : y + window, x : x + window] += 1
    labels = (probs / count).argmax(0).astype(np.uint8) + 1
    profile.update(count=1, dtype="uint8")
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(labels, 1)
    return time.perf_counter() - start


def halo_overhead(side: int, chunk: int, window: int, overlap: int) -> float:
    """Fraction of extra windows the chunks run, beyond the scene grid's own (square scene)."""
    from xlandcover.prediction._windows import axis_grid

    grid = axis_grid(side, window=window, overlap=overlap, multiple=32)
    edges = [*range(0, side, chunk), side]
    run = sum(len(grid.touching(a, b)) for a, b in itertools.pairwise(edges))
    return (run / len(grid.starts)) ** 2 - 1


def labels_differing(store_a: Path, store_b: Path) -> int:
    """Pixels whose label differs between two predictions of one scene (0: no seams)."""
    import xarray as xr

    a = xr.open_zarr(store_a, consolidated=False)["landcover"].data
    b = xr.open_zarr(store_b, consolidated=False)["landcover"].data
    return int((a != b).sum().compute())


def _vm_hwm_mib() -> float:
    """Peak RSS of this process image (ru_maxrss would include the parent's, kept by exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_child(args: argparse.Namespace) -> None:
    """(d), in a fresh process: peak RSS of one end-to-end predict."""
    import dask

    import xlandcover  # noqa: F401
    from xlandcover._torch import torch  # noqa: F401  (imports count in the baseline)

    dask.config.set(scheduler="threads", num_workers=2)
    baseline = _vm_hwm_mib()
    with tempfile.TemporaryDirectory() as tmp:
        seconds = end_to_end(
            Path(args.scene),
            Path(args.model),
            Path(tmp) / "o.zarr",
            chunk=args.chunks,
            chunks=None,
            window=args.window,
            overlap=args.window // 8,
        )
    result = {"peak_rss_mib": _vm_hwm_mib(), "after_imports_mib": baseline, "seconds": seconds}
    print(json.dumps(result))


def whole_child(args: argparse.Namespace) -> None:
    """(e), in a fresh process: one kind of job; the parent times the whole process."""
    start = time.perf_counter()
    if args.whole_child == "forward":
        import xlandcover as xlc

        package = xlc.load_model(args.model)
        seconds = forward_only(package, args.side, args.side, args.window, args.overlap)
    elif args.whole_child == "handwritten":
        import xlandcover as xlc

        package = xlc.load_model(args.model)
        seconds = handwritten(Path(args.scene), package, Path(args.out), args.window)
    else:
        import dask

        import xlandcover as xlc

        dask.config.set(scheduler="threads")
        kw = {} if args.overlap < 0 else {"overlap": args.overlap}
        img = xlc.open_raster(args.scene, chunks=2048, bands=BANDS)
        labels = img.landcover.predict(xlc.load_model(args.model), **kw)
        graph = time.perf_counter() - start
        labels.landcover.to_zarr(args.out, overwrite=True)
        seconds = time.perf_counter() - start - graph
        print(json.dumps({"until_graph_s": graph, "compute_and_write_s": seconds}))
        return
    print(json.dumps({"work_s": seconds}))


def whole_process(args: argparse.Namespace, folder: Path) -> dict[str, object]:
    """(e): whole processes on a 2048² scene (50 % overlap, and xlandcover's defaults)."""
    quick = args.quick
    side = 1024 if quick else 2048
    package = make_package(folder / "whole.xlc", quick)
    window = package.metadata.window
    scene = make_scene(folder / "whole.tif", side, side)
    trees: dict[str, Path | None] = {"current": None}
    if args.compare:
        trees["before"] = _extract(args.compare, folder / "before")
    jobs: list[tuple[str, str, Path | None, int]] = [("forward", "forward_50", None, window // 2)]
    for name, tree in trees.items():
        jobs.append(("xlandcover", f"xlandcover_50_{name}", tree, window // 2))
        jobs.append(("xlandcover", f"xlandcover_defaults_{name}", tree, -1))
    jobs.append(("handwritten", "handwritten_50", None, window // 2))
    runs: dict[str, list[dict[str, float]]] = {}
    for _ in range(1 if quick else args.whole_rounds):
        for kind, label, tree, overlap in jobs:
            env = dict(os.environ)
            if tree is not None:
                env["PYTHONPATH"] = str(tree) + os.pathsep + env.get("PYTHONPATH", "")
            cmd = [sys.executable, __file__, "--whole-child", kind, "--scene", str(scene)]
            cmd += ["--model", str(package.path), "--side", str(side), "--window", str(window)]
            cmd += ["--overlap", str(overlap), "--out", str(folder / f"{label}.out")]
            start = time.perf_counter()
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
            wall = time.perf_counter() - start
            inner = json.loads(out.stdout.strip().splitlines()[-1])
            runs.setdefault(label, []).append({"process_s": wall, **inner})
    mpx = side * side / 1e6
    best = {k: min(r["process_s"] for r in v) for k, v in runs.items()}
    result: dict[str, object] = {
        "scene_px": [side, side],
        "window": window,
        "overlap_50": window // 2,
        "overlap_defaults": package.metadata.overlap,
        "runs": runs,
        "process_mpx_s": {k: mpx / v for k, v in best.items()},
        "ratio_xlandcover_50_over_forward_50": best["forward_50"] / best["xlandcover_50_current"],
        "ratio_xlandcover_defaults_over_handwritten_50": best["handwritten_50"]
        / best["xlandcover_defaults_current"],
    }
    if "before" in trees:
        result["before"] = args.compare
        for kind in ("50", "defaults"):
            result[f"ratio_xlandcover_{kind}_current_over_before"] = (
                best[f"xlandcover_{kind}_before"] / best[f"xlandcover_{kind}_current"]
            )
    return result


def _extract(ref: str, folder: Path) -> Path:
    """The ``xlandcover`` package of git revision ``ref``, extracted into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "xlandcover"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny model and scene")
    parser.add_argument("--only", choices=["e"], help="only the whole-process figures (e)")
    parser.add_argument("--compare", metavar="REF", help="(e) also with git revision REF")
    parser.add_argument("--whole-rounds", type=int, default=1, help="repeats of (e)")
    parser.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--whole-child", help=argparse.SUPPRESS)
    parser.add_argument("--scene", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--chunks", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--window", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--side", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--overlap", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        return rss_child(args)
    if args.whole_child:
        return whole_child(args)
    if args.only == "e":
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps({"e_whole_process": whole_process(args, Path(tmp))}, indent=2))
        return

    import dask

    dask.config.set(scheduler="threads")
    quick = args.quick
    side = 1100 if quick else 6144  # (a)-(c) scene side, larger than the default chunk
    # (d): 1x, 4x, 16x of rss_base^2 at a fixed chunk; 1x already has 4 chunks, so the
    # baseline runs as many chunks at once as the larger scenes do
    rss_base, rss_chunk, rss_window = (512, 256, 64) if quick else (1024, 512, 128)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        package = make_package(tmp_path / "model.xlc", quick)
        window = package.metadata.window
        overlap = window // 4  # (a) and (b); the package's default (b_defaults) is window // 8
        scene = make_scene(tmp_path / "scene.tif", side, side)
        mpx = side * side / 1e6
        chunk = AUTO_CHUNK_WINDOWS * window  # what chunks="auto" gives

        t_a = forward_only(package, side, side, window, overlap)
        t_b = end_to_end(scene, package.path, tmp_path / "b.zarr", window=window, overlap=overlap)
        small = 6 * window  # an explicit smaller chunking, to show what the halo costs
        t_b_small = end_to_end(
            scene,
            package.path,
            tmp_path / "b_small.zarr",
            window=window,
            overlap=overlap,
            chunk=small,
            chunks=small,
        )
        t_b_def = end_to_end(scene, package.path, tmp_path / "b_def.zarr")
        t_c = handwritten(scene, package, tmp_path / "c.tif", window)
        result: dict[str, object] = {
            "machine": f"{platform.machine()} {platform.processor()} x{_cores()} cores",
            "model": f"Unet/{package.metadata.arch_kwargs['encoder_name']}",
            "scene_px": [side, side],
            "window": window,
            "overlap_a_b": overlap,
            "a_forward_mpx_s": mpx / t_a,
            "b_end_to_end_mpx_s": mpx / t_b,
            "b_chunk": chunk,
            "b_halo_extra_windows": halo_overhead(side, chunk, window, overlap),
            "b_defaults_halo_extra_windows": halo_overhead(
                side, chunk, window, package.metadata.overlap
            ),
            "b_small_chunks": small,
            "b_small_chunks_mpx_s": mpx / t_b_small,
            "b_small_chunks_halo_extra_windows": halo_overhead(side, small, window, overlap),
            "ratio_b_small_chunks_over_a": t_a / t_b_small,
            "b_defaults_mpx_s": mpx / t_b_def,
            "c_handwritten_mpx_s": mpx / t_c,
            "ratio_b_over_a": t_a / t_b,
            "ratio_b_defaults_over_c": t_c / t_b_def,
            # the same prediction computed as one chunk (b) and as 3072 px chunks: seams would
            # show as differing labels along chunk borders
            "labels_differing_b_vs_b_small_chunks": labels_differing(
                tmp_path / "b.zarr", tmp_path / "b_small.zarr"
            ),
        }
        rss = {}
        for scale in (1, 4, 16):
            n = rss_base * int(np.sqrt(scale))
            path = make_scene(tmp_path / f"rss{scale}.tif", n, n)
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--rss-child",
                    "--scene",
                    str(path),
                    "--model",
                    str(package.path),
                    "--chunks",
                    str(rss_chunk),
                    "--window",
                    str(rss_window),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            rss[f"{scale}x"] = json.loads(out.stdout.strip().splitlines()[-1])
            path.unlink()
        result["d_rss"] = {
            "chunk": rss_chunk,
            "window": rss_window,
            "base_px": [rss_base, rss_base],
            **rss,
        }
        result["ratio_rss_16x_over_1x"] = rss["16x"]["peak_rss_mib"] / rss["1x"]["peak_rss_mib"]
        result["e_whole_process"] = whole_process(args, tmp_path)
    print(json.dumps(result, indent=2))


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
