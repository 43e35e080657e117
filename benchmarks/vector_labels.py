"""Training from vector labels on real data: polygons over Zion, survey points over Dubai.

    .venv/bin/python benchmarks/vector_labels.py [--minutes 6] [--only zion|dubai] [--out DIR]

(a) Polygons. A few dozen patches of the real NLCD 2011 labels on the Landsat 8 grid over Zion
    are vectorised into a GeoPackage (in EPSG:4326, class names in a ``class`` column), as a
    stand-in for digitised training polygons: for each class, up to 5 seeded centres are drawn
    among pixels deep inside an area of that class (at least 100 px apart), and the polygon is
    the connected area of that class within 13 x 13 px around the centre, as vectorised by
    ``rasterio.features.shapes``. A TOML configuration trains on them (``[data] labels =
    "zion-polygons.gpkg"``, spatial blocks, recipe "auto", ``max_minutes``) and scores the
    network and a per-pixel random forest trained on the same polygons on the dense NLCD of the
    held-out test blocks (``[evaluate] labels``).
(b) Points. A few hundred seeded random points on the Dubai aerial tiles (about 50 per tile,
    on labelled pixels), each with the class of the dense mask under it, as if from a field
    survey, one GeoPackage per image (no CRS: the tiles are plain JPEGs on a pixel grid);
    trained with ``point_radius = 3`` (a point labels the 29 pixels within 3 px), train tiles
    1-5, validation tile 6, scored on the dense masks of tile 7 beside the dense-label model.

Also measures chip placement for sparse labels: the grid at half-chip stride (what
``sample_chips`` does) against one chip centred on each feature. Writes
``benchmarks/results/vector_labels-<machine>.json`` and prints it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import rasterio.features
import shapely
from scipy import ndimage

import xlandcover as xlc
from xlandcover.baseline import forest_baseline
from xlandcover.config import load_config
from xlandcover.errors import WeakModelWarning

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
ZION = DATA / "zion-landsat8-nlcd"
DUBAI = DATA / "dubai-aerial"
ZION_CLASSES = ["water", "developed", "barren", "forest", "shrubland", "herbaceous",
                "cultivated", "wetlands"]  # fmt: skip
ZION_COLORS = ["#476ba1", "#e1cdce", "#b3afa4", "#6ca966", "#ccba7d", "#e3e3c2", "#dcd93d",
               "#bad9eb"]  # fmt: skip
DUBAI_CLASSES = [
    ("building", "#3c1098", (60, 16, 152)),
    ("land", "#8429f6", (132, 41, 246)),
    ("road", "#6ec1e4", (110, 193, 228)),
    ("vegetation", "#fedd3a", (254, 221, 58)),
    ("water", "#e2a929", (226, 169, 41)),
]
SETTINGS = ("encoder", "epochs", "steps_per_epoch", "batch_size", "window", "max_minutes")
log = logging.getLogger("vector_labels")


# --- (a) polygons over Zion --------------------------------------------------------------------


def zion_polygons(path: Path, *, per_class: int = 5, seed: int = 0) -> gpd.GeoDataFrame:
    """Patches of the NLCD vectorised as training polygons (see the module docstring)."""
    with rasterio.open(ZION / "nlcd_generalized_on_landsat_grid.tif") as src:
        nlcd = src.read(1)
        transform, crs = src.transform, src.crs
    rng = np.random.default_rng(seed)
    half = 6
    rows, values = [], []
    for k in range(1, 9):
        for depth in (4, 2, 1):  # centres deep inside an area of the class, if it has any
            inside = ndimage.binary_erosion(nlcd == k, iterations=depth)
            inside[: half + 1, :] = inside[-half - 1 :, :] = False
            inside[:, : half + 1] = inside[:, -half - 1 :] = False
            candidates = np.argwhere(inside)
            if len(candidates):
                break
        chosen: list[np.ndarray] = []
        for i in rng.permutation(len(candidates)):
            c = candidates[i]
            if all(np.abs(c - o).max() >= 100 for o in chosen):
                chosen.append(c)
            if len(chosen) == per_class:
                break
        for r, c in chosen:
            window = nlcd[r - half : r + half + 1, c - half : c + half + 1] == k
            parts, _ = ndimage.label(window)
            patch = (parts == parts[half, half]).astype(np.uint8)
            t = transform @ rasterio.Affine.translation(c - half, r - half)
            for geom, _ in rasterio.features.shapes(patch, mask=patch.astype(bool), transform=t):
                rows.append(shapely.geometry.shape(geom))
                values.append(ZION_CLASSES[k - 1])
    table = gpd.GeoDataFrame({"class": values}, geometry=rows, crs=crs).to_crs("EPSG:4326")
    table.to_file(path)
    return table


def zion_config(folder: Path, minutes: float, epochs: int | None = None) -> Path:
    classes = "\n".join(
        f'[[classes]]\nid = {i + 1}\nname = "{n}"\ncolor = "{c}"\n'
        for i, (n, c) in enumerate(zip(ZION_CLASSES, ZION_COLORS, strict=True))
    )
    text = f"""
[data]
images = "{ZION / "landsat8_b2345_stack.tif"}"
labels = "zion-polygons.gpkg"
label_column = "class"
bands = ["blue", "green", "red", "nir"]
chunks = 512

{classes}
[chips]
size = "auto"

[split]
block_size = "auto"
fractions = [0.6, 0.2, 0.2]
buffer = 960.0
seed = 0

[evaluate]
labels = "{ZION / "nlcd_generalized_on_landsat_grid.tif"}"

[train]
{f"epochs = {epochs}" if epochs else f"max_minutes = {minutes}"}

[output]
dir = "zion-run{f"-{epochs}-epochs" if epochs else ""}"
"""
    path = folder / f"zion-polygons{f'-{epochs}-epochs' if epochs else ''}.toml"
    path.write_text(text)
    return path


# --- (b) points over Dubai ---------------------------------------------------------------------


def dubai_points(folder: Path, *, per_tile: int = 50, seed: int = 0) -> int:
    """Seeded random points on labelled pixels of each tile's masks, one GeoPackage per image."""
    rng = np.random.default_rng(seed)
    colors = {rgb: i + 1 for i, (_, _, rgb) in enumerate(DUBAI_CLASSES)}
    total = 0
    for tile in sorted(DUBAI.glob("tile-*")):
        masks = sorted((tile / "masks").glob("*.png"))
        ignore = [(155, 155, 155), (0, 0, 0)]
        labels = [
            xlc.open_color_mask(
                m, colors, ignore_colors=ignore, chunks=None, pixel_grid=True
            ).values
            for m in masks
        ]
        sizes = np.array([lab.size for lab in labels], dtype=float)
        counts = np.maximum(3, np.round(per_tile * sizes / sizes.sum())).astype(int)
        for mask, lab, n in zip(masks, labels, counts, strict=True):
            rr, cc = np.nonzero(lab != 255)
            pick = rng.choice(len(rr), size=n, replace=False)
            r, c = rr[pick], cc[pick]
            names = [DUBAI_CLASSES[int(v) - 1][0] for v in lab[r, c]]
            points = gpd.GeoDataFrame({"class": names}, geometry=shapely.points(c + 0.5, r + 0.5))
            out = folder / "points" / tile.name / f"{mask.stem}.gpkg"
            out.parent.mkdir(parents=True, exist_ok=True)
            with warnings.catch_warnings():  # no CRS on purpose: the tiles have none
                warnings.simplefilter("ignore", UserWarning)
                points.to_file(out)
            total += n
    return total


def dubai_config(folder: Path, minutes: float) -> Path:
    classes = "\n".join(
        f'[[classes]]\nid = {i + 1}\nname = "{n}"\ncolor = "{c}"\nmask_color = {list(rgb)}\n'
        for i, (n, c, rgb) in enumerate(DUBAI_CLASSES)
    )
    text = f"""
[data]
images = "{DUBAI}/tile-*/images/*.jpg"
labels = "points/tile-*/*.gpkg"
label_column = "class"
point_radius = 3
group = "tile-\\\\d+"
pixel_grid = true
bands = ["red", "green", "blue"]
chunks = 1024
ignore_colors = [[155, 155, 155], [0, 0, 0]]

{classes}
[chips]
size = "auto"

[split]
by = "group"
assign = {{ val = ["tile-6"], test = ["tile-7"] }}

[evaluate]
labels = "{DUBAI}/tile-*/masks/*.png"

[train]
max_minutes = {minutes}

[output]
dir = "dubai-run"
"""
    path = folder / "dubai-points.toml"
    path.write_text(text)
    return path


# --- shared ------------------------------------------------------------------------------------


def run_case(name: str, config: Path, extra: dict) -> dict:
    cfg = load_config(config)
    t0 = time.monotonic()
    chips = cfg.chips()
    splits = cfg.splits(chips)
    log.info("%s: %s\n%s", name, chips, splits.summary().to_string())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WeakModelWarning)  # the verdict is logged
        result = xlc.train(splits, config=cfg.train_config(), out_dir=cfg.out_dir,
                           progress=False)  # fmt: skip
    minutes = float(result.history["seconds"].iloc[-1]) / 60
    test = cfg.evaluation_chips(splits, "test")
    t1 = time.monotonic()
    report = xlc.evaluate(result.model, split=test)
    forest = forest_baseline(splits.train, test, seed=0)
    log.info("%s on the dense test labels:\n%s\nforest:\n%s", name, report, forest.report)
    return {
        "name": name,
        **extra,
        "train_chips": len(splits.train),
        "val_chips": len(splits.val),
        "labelled_train_pixels": int(xlc.chips.distinct_counts(splits.train).sum()),
        "test_chips_dense": len(test),
        "test_pixels_dense": int(report.total),
        "forest_scored_pixels": forest.n_scored_pixels,
        "chip_size": chips.size,
        "settings": {k: result.settings[k] for k in SETTINGS},
        "minutes": round(minutes, 2),
        "val_miou": round(result.best_miou, 4),
        "unet_miou": round(float(report.miou), 4),
        "forest_miou": round(float(forest.report.miou), 4),
        "unet_pixel_accuracy": round(float(report.pixel_accuracy), 4),
        "forest_pixel_accuracy": round(float(forest.report.pixel_accuracy), 4),
        "unet_iou": dict(zip(report.class_names, _rounded(report.iou), strict=True)),
        "forest_iou": dict(
            zip(forest.report.class_names, _rounded(forest.report.iou), strict=True)
        ),
        "wall_minutes": round((time.monotonic() - t0) / 60, 1),
        "scoring_minutes": round((time.monotonic() - t1) / 60, 1),
    }


def placement(config: Path) -> dict:
    """Grid chips at half stride (as sample_chips places them) against one chip centred on
    each feature: chips, labelled pixels per chip, labelled pixels covered, whole features."""
    cfg = load_config(config)
    _, labels, features, _ = cfg._inputs()
    chips = cfg.chips()
    size = chips.size
    assert features is not None
    out = {"grid": [0, 0, 0, 0, 0], "centred": [0, 0, 0, 0, 0]}  # chips, px, covered, whole, all
    for s, (lab, feat) in enumerate(zip(labels, features, strict=True)):
        lab_v = np.asarray(lab.values) != 255
        feat_v = np.asarray(feat.values)
        h, w = lab_v.shape
        t = chips.table[chips.table["source"] == s]
        grid = t[["row", "col"]].to_numpy()
        boxes = ndimage.find_objects(feat_v.astype(np.int64))
        centred = []
        for b in boxes:
            if b is None:
                continue
            cr, cc = (b[0].start + b[0].stop) // 2, (b[1].start + b[1].stop) // 2
            centred.append((min(max(cr - size // 2, 0), h - size),
                            min(max(cc - size // 2, 0), w - size)))  # fmt: skip
        for name, tops in (("grid", grid), ("centred", np.array(centred).reshape(-1, 2))):
            covered = np.zeros_like(lab_v)
            whole = set()
            for r, c in tops:
                covered[r : r + size, c : c + size] = True
                out[name][1] += int(lab_v[r : r + size, c : c + size].sum())
                inside = np.unique(feat_v[r : r + size, c : c + size])
                for f in inside[inside > 0]:
                    b = boxes[f - 1]
                    if (
                        b[0].start >= r
                        and b[0].stop <= r + size
                        and b[1].start >= c
                        and (b[1].stop <= c + size)
                    ):
                        whole.add(int(f))
            out[name][0] += len(tops)
            out[name][2] += int((covered & lab_v).sum())
            out[name][3] += len(whole)
            out[name][4] += sum(b is not None for b in boxes)
    total = int(sum((np.asarray(lab.values) != 255).sum() for lab in labels))
    return {
        name: {
            "chips": v[0],
            "labelled_px_per_chip": round(v[1] / max(v[0], 1), 1),
            "labelled_px_covered_share": round(v[2] / total, 4),
            "features_whole_in_a_chip_share": round(v[3] / max(v[4], 1), 4),
        }
        for name, v in out.items()
    }


def _rounded(values: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else round(float(v), 4) for v in values]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=6.0, help="max_minutes of each run")
    parser.add_argument("--only", choices=["zion", "dubai"])
    parser.add_argument(
        "--zion-epochs", type=int, help="also train Zion this many epochs, without a time budget"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "vector-labels")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("pyogrio").setLevel(logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    machine = f"cpu-{os.cpu_count()}core"
    results_path = ROOT / "benchmarks" / "results" / f"vector_labels-{machine}.json"
    doc = json.loads(results_path.read_text()) if results_path.exists() else {}
    doc.update(machine=f"{platform.machine()}, {os.cpu_count()} cores", cases=doc.get("cases", []))
    cases = {c["name"]: c for c in doc["cases"]}
    if args.only in (None, "zion"):
        table = zion_polygons(args.out / "zion-polygons.gpkg")
        config = zion_config(args.out, args.minutes)
        doc["placement_zion"] = placement(config)
        extra = {"labels": f"{len(table)} polygons vectorised from NLCD patches"}
        cases["zion-polygons"] = run_case("zion-polygons", config, extra)
        if args.zion_epochs:
            config = zion_config(args.out, args.minutes, args.zion_epochs)
            name = f"zion-polygons-{args.zion_epochs}-epochs"
            cases[name] = run_case(name, config, extra)
    if args.only in (None, "dubai"):
        n = dubai_points(args.out)
        config = dubai_config(args.out, args.minutes)
        doc["placement_dubai"] = placement(config)
        extra = {"labels": f"{n} survey-like points, point_radius 3",
                 "dense_label_model_miou": 0.531}  # fmt: skip
        cases["dubai-points"] = run_case("dubai-points", config, extra)
    doc["cases"] = list(cases.values())
    results_path.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
