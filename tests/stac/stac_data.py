"""Real published STAC items pointed at small local COGs made from real pixels.

The items in ``../shared/data/stac-items`` are kept as the APIs served them, except that the
assets the tests read point at local COGs and their projection metadata (``proj:shape``,
``proj:transform``, ``proj:bbox``), the item ``bbox`` and ``geometry`` are rewritten to match
those COGs; the assets no COG is made for and the ``links`` (live API URLs) are removed.

- Sentinel-2 L2A (Earth Search and Planetary Computer): blue, green, red, nir at 10 m and
  swir16 at 20 m from the Sen1Floods11 Sentinel-2 chip (real digital numbers; + 1000 for
  items of processing baseline >= 04.00, as ESA stores them), placed at the upper-left corner
  of each item's own MGRS tile grid, a different crop per item. SCL at 20 m is derived from
  the chip's water labels (6 water, 4 vegetation) with a cloud, a shadow and, on some items,
  a snow patch at item-specific places. Items whose orbit covers only part of the tile get
  nodata (0) on their left 40 columns.
- NAIP: 4-band uint8 (R, G, B, NIR) from the Zion Landsat 8 scene, stretched to 8 bits,
  200 x 200 pixels on each item's own 0.6 m grid, placed so that the NW and NE quarter
  quads of a year abut at x = 645016.2 m and the two years overlap on shifted grids.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.transform import Affine
from rasterio.warp import transform_bounds

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
ITEMS = SHARED / "stac-items"
S2_CHIP = SHARED / "sen1floods11-sample" / "Spain_7370579_S2Hand.tif"
S2_LABEL = SHARED / "sen1floods11-sample" / "Spain_7370579_LabelHand.tif"
LANDSAT = SHARED / "zion-landsat8-nlcd" / "landsat8_b2345_stack.tif"

S2_SIZE = 128  # 10 m pixels per side of each Sentinel-2 COG
NAIP_SIZE = 200
# Sen1Floods11 band order: B1 B2 B3 B4 B5 B6 B7 B8 B8A B9 B10 B11 B12
S2_10M = {"blue": 1, "green": 2, "red": 3, "nir": 7}
S2_20M = {"swir16": 11}
ES_KEYS = {"blue": "blue", "green": "green", "red": "red", "nir": "nir", "swir16": "swir16"}
PC_KEYS = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08", "swir16": "B11"}
PARTIAL = {"S2A_33TWN_20220122_0_L2A", "S2B_33TWN_20220226_0_L2A"}  # relative orbit R079


@dataclass
class Catalog:
    """Rewritten items and where their COGs are."""

    items: list[dict[str, Any]] = field(default_factory=list)
    cogs: dict[tuple[str, str], Path] = field(default_factory=dict)  # (item id, band) -> COG
    source: dict[str, str] = field(default_factory=dict)  # item id -> catalog it came from

    def by_id(self, *ids: str) -> list[dict[str, Any]]:
        found = {i["id"]: i for i in self.items}
        return [copy.deepcopy(found[i]) for i in ids]

    def served_by(self, catalog: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(i) for i in self.items if self.source[i["id"]] == catalog]

    def collection(self, name: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(i) for i in self.items if i["collection"] == name]


def build_catalog(root: Path) -> Catalog:
    root.mkdir(parents=True, exist_ok=True)
    cat = Catalog()
    with rasterio.open(S2_CHIP) as src:
        chip = src.read()
    with rasterio.open(S2_LABEL) as src:
        water = src.read(1)
    es = _features("earth-search-s2-l2a.json")
    pc = _features("planetary-computer-s2-l2a.json")
    for k, item in enumerate([*es, *pc]):
        cat.items.append(_s2_item(item, k, chip, water, root, cat))
        cat.source[item["id"]] = "earth-search" if k < len(es) else "planetary-computer"
    with rasterio.open(LANDSAT) as src:
        landsat = src.read(window=((300, 700), (300, 700)))
    for k, item in enumerate(_features("planetary-computer-naip.json")):
        cat.items.append(_naip_item(item, k, landsat, root, cat))
        cat.source[item["id"]] = "planetary-computer"
    return cat


def _features(name: str) -> list[dict[str, Any]]:
    return json.loads((ITEMS / name).read_text())["features"]


def _s2_item(item, k, chip, water, root: Path, cat: Catalog) -> dict[str, Any]:
    item = copy.deepcopy(item)
    pc = "B04" in item["assets"]
    keys = PC_KEYS if pc else ES_KEYS
    scl_key = "SCL" if pc else "scl"
    ref = item["assets"][keys["red"]]["proj:transform"]
    x0, y0 = float(ref[2]), float(ref[5])
    epsg = int(item["properties"]["proj:epsg"])
    baseline = item["properties"]["s2:processing_baseline"]
    add = 1000 if tuple(int(v) for v in baseline.split(".")) >= (4, 0) else 0
    r0, c0 = 16 * (k % 8), 24 * (k % 6)  # a different crop of the chip per item
    crop = chip[:, r0 : r0 + S2_SIZE, c0 : c0 + S2_SIZE].astype(np.int32)
    dn = np.where(crop > 0, crop + add, 0)
    if item["id"] in PARTIAL:
        dn[:, :, :40] = 0
    assets: dict[str, Any] = {}
    for band, idx in S2_10M.items():
        assets[keys[band]] = _s2_asset(
            item, keys[band], root, dn[idx], x0, y0, 10, epsg, cat, band, nodata=0
        )
    for band, idx in S2_20M.items():
        assets[keys[band]] = _s2_asset(
            item, keys[band], root, dn[idx, ::2, ::2], x0, y0, 20, epsg, cat, band, nodata=0
        )
    scl = _scl(water[r0 : r0 + S2_SIZE : 2, c0 : c0 + S2_SIZE : 2], k)
    scl[dn[3, ::2, ::2] == 0] = 0
    assets[scl_key] = _s2_asset(item, scl_key, root, scl, x0, y0, 20, epsg, cat, "scl", nodata=0)
    item["assets"] = assets
    _set_footprint(item, x0, y0, 10, S2_SIZE, S2_SIZE, epsg)
    return item


def _scl(water: np.ndarray, k: int) -> np.ndarray:
    scl = np.where(water == 1, 6, 4).astype(np.uint8)
    a = 4 + 5 * (k % 7)
    scl[a : a + 10, a : a + 12] = 9  # cloud
    scl[a + 12 : a + 16, a + 2 : a + 14] = 3  # its shadow
    scl[50:54, 5 + 4 * (k % 5) : 9 + 4 * (k % 5)] = 8  # a medium-probability cloud
    if k % 3 == 0:
        scl[56:60, 40:50] = 11  # snow
    scl[20:22, 50:60] = 2  # dark area: kept
    return scl


def _s2_asset(item, key, root, data, x0, y0, res, epsg, cat, band, *, nodata):
    asset = copy.deepcopy(item["assets"][key])
    path = root / f"{item['id']}_{key}.tif"
    transform = Affine(res, 0, x0, 0, -res, y0)
    _write_cog(path, data[None], transform, epsg, nodata=nodata)
    h, w = data.shape
    asset["href"] = path.as_uri()
    asset["proj:shape"] = [h, w]
    asset["proj:transform"] = [res, 0.0, x0, 0.0, -res, y0]
    if "proj:bbox" in asset:
        asset["proj:bbox"] = [x0, y0 - res * h, x0 + res * w, y0]
    cat.cogs[(item["id"], band)] = path
    return asset


def _naip_item(item, k, landsat, root: Path, cat: Catalog) -> dict[str, Any]:
    item = copy.deepcopy(item)
    props = item["properties"]
    t = props["proj:transform"]
    res, gx0, gy0 = float(t[0]), float(t[2]), float(t[5])
    east = "_ne_" in item["id"]
    # NE quads start at x = 645016.2 (or their own origin if further east); NW quads end there
    x0 = max(gx0, 645016.2) if east else 645016.2 - res * NAIP_SIZE
    col = round((x0 - gx0) / res)
    x0 = gx0 + col * res  # stay on the item's own grid
    row = round((gy0 - 4873770.0) / res)
    y0 = gy0 - row * res
    bgrn = landsat[:, 40 * k : 40 * k + NAIP_SIZE, 30 * k : 30 * k + NAIP_SIZE].astype(float)
    lo, hi = np.percentile(bgrn, [2, 98], axis=(1, 2), keepdims=True)
    u8 = np.clip((bgrn - lo) / (hi - lo) * 254 + 1, 1, 255).astype(np.uint8)
    rgbn = u8[[2, 1, 0, 3]]  # Landsat blue, green, red, NIR -> NAIP red, green, blue, NIR
    epsg = int(props["proj:epsg"])
    path = root / f"{item['id']}_image.tif"
    _write_cog(path, rgbn, Affine(res, 0, x0, 0, -res, y0), epsg, nodata=None)
    image = copy.deepcopy(item["assets"]["image"])
    image["href"] = path.as_uri()
    item["assets"] = {"image": image}
    props["proj:shape"] = [NAIP_SIZE, NAIP_SIZE]
    props["proj:transform"] = [res, 0.0, x0, 0.0, -res, y0, 0.0, 0.0, 1.0]
    props["proj:bbox"] = [x0, y0 - res * NAIP_SIZE, x0 + res * NAIP_SIZE, y0]
    cat.cogs[(item["id"], "image")] = path
    _set_footprint(item, x0, y0, res, NAIP_SIZE, NAIP_SIZE, epsg)
    return item


def _set_footprint(item, x0, y0, res, h, w, epsg) -> None:
    west, south, east, north = transform_bounds(
        f"EPSG:{epsg}", "EPSG:4326", x0, y0 - res * h, x0 + res * w, y0, densify_pts=21
    )
    item["bbox"] = [west, south, east, north]
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    item["geometry"] = {"type": "Polygon", "coordinates": [ring]}
    item["links"] = []


def _write_cog(path: Path, data: np.ndarray, transform, epsg: int, *, nodata) -> None:
    from rasterio.shutil import copy as rio_copy

    dtype = "uint8" if data.dtype == np.uint8 else "uint16"
    tmp = path.with_suffix(".tmp.tif")
    profile = {
        "driver": "GTiff",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": data.shape[0],
        "dtype": dtype,
        "crs": f"EPSG:{epsg}",
        "transform": transform,
        "tiled": True,
        "blockxsize": 64,
        "blockysize": 64,
    }
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data.astype(dtype))
    rio_copy(tmp, path, driver="COG", BLOCKSIZE=64)
    tmp.unlink()


def reflectance(path: Path, offset: float) -> np.ndarray:
    """What a Sentinel-2 COG holds in reflectance, read directly with rasterio (NaN nodata)."""
    with rasterio.open(path) as src:
        dn = src.read(1).astype(np.float64)
    return np.where(dn == 0, np.nan, dn * 1e-4 + offset)
