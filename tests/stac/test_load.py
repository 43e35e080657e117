"""STAC ingestion on real published items, offline: local COGs of real pixels, and a real STAC
API server on loopback for the searches (see stac_data.py and stac_server.py)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import rasterio
import xarray as xr

import xlandcover as xlc
from xlandcover.errors import (
    CatalogUnreachableError,
    MissingAssetError,
    MixedCRSError,
    NoItemsError,
    StacQueryError,
    UnknownPresetError,
)
from xlandcover.stac import SCL_MASKED, sentinel2_boa_offset

from ..conftest import raise_if_dask_computes
from . import stac_server
from .stac_data import Catalog, build_catalog

TWN = ["S2A_33TWN_20220122_0_L2A", "S2B_33TWN_20220130_0_L2A", "S2B_33TWN_20220226_0_L2A"]
TDE_ES = "S2A_13TDE_20231008_0_L2A"
TDE_PC = [
    "S2B_MSIL2A_20240825T173909_R098_T13TDE_20240825T215747",  # 48.7 % cloud
    "S2A_MSIL2A_20240823T174901_R141_T13TDE_20240824T013055",  # 66.8 % cloud
]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Catalog:
    return build_catalog(tmp_path_factory.mktemp("cogs"))


@pytest.fixture(scope="module")
def servers(catalog, tmp_path_factory):
    """Two real STAC APIs on loopback, as the items were published: Earth Search's and
    Planetary Computer's (one server for both would also be wrong for a technical reason:
    its DuckDB store folds asset keys case-insensitively, so "scl" and "SCL" collide)."""
    procs, urls = [], {}
    try:
        for name in ("earth-search", "planetary-computer"):
            root = tmp_path_factory.mktemp(f"stac-api-{name}")
            urls[name], proc = stac_server.start(catalog.served_by(name), root)
            procs.append(proc)
    except stac_server.ServerUnavailable as e:
        pytest.skip(f"the loopback STAC API could not start: {e}")
    yield urls
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server(servers):
    return servers["earth-search"]


@pytest.fixture(scope="module")
def pc_server(servers):
    return servers["planetary-computer"]


def _grid(img):
    t = img.rio.transform()
    return t.c, t.f, t.a


def _place(path: Path, img, band: int = 1, *, scale: float = 1, offset: float = 0, nodata=0):
    """The COG's band on ``img``'s grid (NaN elsewhere), read directly with rasterio."""
    left, top, res = _grid(img)
    out = np.full((img.sizes["y"], img.sizes["x"]), np.nan)
    with rasterio.open(path) as src:
        data = src.read(band).astype(np.float64)
        k = round(src.transform.a / res)
        r0 = round((top - src.transform.f) / res)
        c0 = round((src.transform.c - left) / res)
    if nodata is not None:
        data[data == nodata] = np.nan
    data = data * scale + offset
    data = np.repeat(np.repeat(data, k, axis=0), k, axis=1)
    out[r0 : r0 + data.shape[0], c0 : c0 + data.shape[1]] = data
    return out


def _s2_expected(catalog, ids, img, band, *, mask=True):
    """Per item reflectance with its own offset and SCL mask, stacked in ``ids`` order."""
    layers = []
    for item in catalog.by_id(*ids):
        off = sentinel2_boa_offset(item["properties"])
        refl = _place(catalog.cogs[(item["id"], band)], img, scale=1e-4, offset=off)
        if mask:
            scl = _place(catalog.cogs[(item["id"], "scl")], img, nodata=None)
            refl[np.isin(scl, list(SCL_MASKED))] = np.nan
        layers.append(refl)
    return np.stack(layers)


def _first_valid(stack):
    out = stack[0].copy()
    for layer in stack[1:]:
        out = np.where(np.isnan(out), layer, out)
    return out


# --- presets -------------------------------------------------------------------------------


def test_boa_offset_is_decided_by_the_processing_baseline(catalog):
    offsets = {i["id"]: sentinel2_boa_offset(i["properties"]) for i in catalog.items[:9]}
    assert offsets["S2A_33TWN_20220122_0_L2A"] == 0.0  # 03.01
    assert offsets["S2B_33TWN_20220130_0_L2A"] == -0.1  # 04.00, boa_offset_applied true
    # 04.00 with earthsearch:boa_offset_applied false: the flag is known to be wrong on
    # some Earth Search items; the baseline (and its raster:bands offset -0.1) decides
    assert offsets["S2B_33TWN_20220226_0_L2A"] == -0.1
    assert offsets["S2B_MSIL2A_20200726T080609_R078_T35MNM_20200908T180357"] == 0.0  # 02.12
    assert offsets[TDE_PC[0]] == -0.1  # 05.11, Planetary Computer: no raster:bands at all
    for item in catalog.items[:5]:  # Earth Search states the offset too: always agrees
        stated = item["assets"]["red"]["raster:bands"][0]["offset"]
        assert offsets[item["id"]] == stated
    assert sentinel2_boa_offset({"datetime": "2021-06-01T00:00:00Z"}) == 0.0
    assert sentinel2_boa_offset({"datetime": "2023-06-01T00:00:00Z"}) == -0.1


def test_unknown_preset_lists_the_presets(catalog):
    with pytest.raises(UnknownPresetError, match="naip, sentinel-2-l2a"):
        xlc.load_stac(catalog.collection("naip"), preset="landsat")


def test_users_define_their_own_preset(catalog):
    from xlandcover.stac import Band, StacPreset, register_preset

    mine = StacPreset(
        name="s2-red-dn",
        collection="sentinel-2-l2a",
        bands=(Band("red", ("red", "B04")),),
        default_bands=("red",),
        nodata=0,
        composite="first",
    )
    register_preset(mine)
    with pytest.raises(ValueError, match="exists"):
        register_preset(mine)
    img = xlc.load_stac(catalog.by_id(TDE_ES), preset="s2-red-dn")
    assert img.rio.resolution() == (10.0, -10.0)  # no default: the assets' own pixel size
    with rasterio.open(catalog.cogs[(TDE_ES, "red")]) as src:
        dn = src.read(1).astype(np.float32)  # digital numbers: this preset does not scale
    left, top, _ = _grid(img)
    r0, c0 = round((top - 4500000) / 10), round((399960 - left) / 10)
    got = img.values[0, r0 : r0 + 128, c0 : c0 + 128]
    np.testing.assert_array_equal(got, np.where(dn == 0, np.nan, dn))


# --- pixels end to end against rasterio ----------------------------------------------------


def test_sentinel2_median_harmonises_masks_and_composites(catalog):
    img = xlc.load_stac(
        catalog.by_id(*TWN),
        preset="sentinel-2-l2a",
        bands=["nir", "red", "swir16"],
        composite="median",
        chunks=48,
    )
    assert img.dims == ("band", "y", "x")
    assert list(img.band.values) == ["nir", "red", "swir16"]
    assert img.dtype == np.float32
    assert img.rio.crs.to_epsg() == 32633  # the items' own UTM zone
    assert img.rio.resolution() == (10.0, -10.0)
    left, top, _ = _grid(img)
    assert (left - 499980) % 10 == 0 and (top - 5300040) % 10 == 0  # on the tile's grid
    got = img.compute()
    for b, band in enumerate(["nir", "red", "swir16"]):
        stack = _s2_expected(catalog, TWN, img, band)
        with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
            want = np.nanmedian(stack, axis=0)
        np.testing.assert_allclose(got.values[b], want, rtol=0, atol=1e-6)
    # the masking did something, and clouds under every date stay NaN
    unmasked = _s2_expected(catalog, TWN, img, "red", mask=False)
    assert np.isnan(_s2_expected(catalog, TWN, img, "red")).sum() > np.isnan(unmasked).sum()


def test_mixed_catalogs_least_cloudy_first(catalog):
    """Earth Search (asset "red", raster:bands) and Planetary Computer ("B04", none) items
    of one tile, composited least-cloudy first; bands asked by the model's names."""
    items = catalog.by_id(*TDE_PC, TDE_ES)
    img = xlc.load_stac(items, bands=["B04", "B08"], composite="first", chunks=64)
    assert list(img.band.values) == ["B04", "B08"]
    assert img.attrs["stac_items"] == [TDE_ES, *TDE_PC]  # priority: least cloudy first
    got = img.compute()
    for b, band in enumerate(["red", "nir"]):
        want = _first_valid(_s2_expected(catalog, [TDE_ES, *TDE_PC], img, band))
        np.testing.assert_allclose(got.values[b], want, rtol=0, atol=1e-6)


def test_load_stac_reads_no_pixels_until_asked(catalog):
    with raise_if_dask_computes():
        img = xlc.load_stac(catalog.by_id(*TWN), bands=["red", "nir"], composite="median")
    assert isinstance(img.data, da.Array) and img.dims == ("band", "y", "x")


def test_time_stack_without_composite(catalog):
    img = xlc.load_stac(catalog.by_id(*TWN), bands=["red"], composite=None, mask=False)
    assert img.dims == ("time", "band", "y", "x")
    assert img.sizes["time"] == 3
    order = list(img["id"].values)
    assert order == TWN  # chronological
    assert (np.diff(img["time"].values) > np.timedelta64(0)).all()
    want = _s2_expected(catalog, order, img.isel(time=0), "red", mask=False)
    np.testing.assert_allclose(img.values[:, 0], want, atol=1e-6)


def test_naip_mosaic_newest_first_in_the_model_band_order(catalog, tiny_package):
    items = catalog.collection("naip")
    img = xlc.load_stac(items, preset="naip", model=tiny_package, chunks=96)
    assert list(img.band.values) == list(tiny_package.bands) == ["red", "green", "blue"]
    assert img.rio.crs.to_epsg() == 26918  # NAD83 / UTM 18N kept: no needless resampling
    assert img.rio.resolution() == (0.6, -0.6)
    newest_first = sorted(items, key=lambda i: i["properties"]["datetime"], reverse=True)
    got = img.compute()
    for b in range(3):
        layers = [
            _place(catalog.cogs[(i["id"], "image")], img, band=b + 1, nodata=None)
            for i in newest_first
        ]
        np.testing.assert_array_equal(got.values[b], _first_valid(np.stack(layers)))
    # the 2018 NW and NE quads abut at x = 645016.2: no gap between them
    left, top, res = _grid(img)
    r = round((top - (4873770.0 - 60)) / res)
    c0, c1 = round((644896.2 - left) / res), round((645136.2 - left) / res)
    assert c1 - c0 == 400
    assert not np.isnan(got.values[0, r, c0:c1]).any()
    with pytest.raises(StacQueryError, match="no cloud-cover property"):  # not ignored
        xlc.load_stac(items, preset="naip", max_cloud=10)


def test_predict_on_stac_imagery(catalog, tiny_package):
    img = xlc.load_stac(catalog.by_id(TDE_ES), model=tiny_package, chunks=64)
    labels = img.landcover.predict(tiny_package, chunks=None)
    assert labels.rio.crs.to_epsg() == 32613
    assert labels.rio.transform() == img.rio.transform()
    values = labels.values
    valid = ~np.isnan(img.values).any(axis=0)
    assert set(np.unique(values[valid])) <= {1, 2, 5, 7}
    assert (values[~valid] == 255).all()


def test_nothing_is_read_before_compute(catalog, tmp_path):
    import shutil

    items = catalog.by_id(TDE_ES)
    for asset in items[0]["assets"].values():  # point at copies, then remove them
        src = Path(asset["href"].removeprefix("file://"))
        copy = tmp_path / src.name
        shutil.copy(src, copy)
        asset["href"] = copy.as_uri()
    for f in tmp_path.iterdir():
        f.unlink()
    img = xlc.load_stac(items, bands=["red", "nir"])  # no file exists: only metadata used
    assert img.chunks is not None
    with pytest.raises(Exception, match=r"No such file|does not exist|not recognized"):
        img.compute()


def test_gdal_cloud_settings_reach_the_reader(catalog, monkeypatch):
    import stackstac

    from xlandcover.stac import GDAL_CLOUD_ENV

    seen = {}
    real = stackstac.stack

    def spy(*args, **kwargs):
        seen.update(kwargs["gdal_env"].always.options)
        return real(*args, **kwargs)

    monkeypatch.setattr(stackstac, "stack", spy)
    xlc.load_stac(catalog.by_id(TDE_ES), bands=["red"])
    assert seen == GDAL_CLOUD_ENV
    assert seen["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR"
    assert int(seen["GDAL_HTTP_MAX_RETRY"]) > 0


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bbox", "match"),
    [
        ((15.5, 47.5, 15.4, 47.6), "antimeridian"),
        ((179.5, -17.0, -179.5, -16.0), "antimeridian"),
        ((15.4, 47.6, 15.5, 47.5), "latitudes are swapped"),
        ((500000, 5200000, 510000, 5210000), "not in degrees"),
    ],
)
def test_bad_bbox(catalog, bbox, match):
    with pytest.raises(StacQueryError, match=match):
        xlc.load_stac(catalog.by_id(*TWN), bbox=bbox)


def test_items_in_several_crs_need_a_target(catalog):
    items = catalog.by_id(TWN[0], TDE_ES)
    with pytest.raises(MixedCRSError, match=r"EPSG:32613, EPSG:32633.*crs="):
        xlc.load_stac(items, bands=["red"])
    img = xlc.load_stac(items, bands=["red"], crs="EPSG:32633", resolution=1000)
    assert img.rio.crs.to_epsg() == 32633


def test_missing_band(catalog):
    with pytest.raises(MissingAssetError, match=r"rededge1.*assets are"):
        xlc.load_stac(catalog.by_id(*TWN), bands=["red", "rededge1"])
    with pytest.raises(MissingAssetError, match="no band 'thermal'"):
        xlc.load_stac(catalog.by_id(*TWN), bands=["thermal"])
    items = catalog.by_id(TDE_ES)
    del items[0]["assets"]["scl"]
    with pytest.raises(MissingAssetError, match="mask=False"):
        xlc.load_stac(items, bands=["red"])
    assert xlc.load_stac(items, bands=["red"], mask=False).sizes["band"] == 1


def test_items_from_a_saved_search_file(catalog, tmp_path):
    import json

    from xlandcover.errors import InputNotFoundError

    path = tmp_path / "search.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": catalog.by_id(*TWN)}))
    img = xlc.load_stac(path, bands=["red"])
    assert sorted(img.attrs["stac_items"]) == sorted(TWN)
    with pytest.raises(InputNotFoundError, match="neither an http"):
        xlc.load_stac(tmp_path / "missing.json")


def test_unreachable_catalog_names_the_url():
    port = stac_server.free_port()  # nothing listens there
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(CatalogUnreachableError, match=f"127.0.0.1:{port}/v1"):
        xlc.load_stac(url, bbox=(15.4, 47.0, 15.5, 47.1), timeout=2)


def test_silent_catalog_times_out_with_the_url():
    with socket.socket() as s:  # accepts connections, never answers
        s.bind(("127.0.0.1", 0))
        s.listen()
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
        conns = []
        t = threading.Thread(target=lambda: conns.append(s.accept()), daemon=True)
        t.start()
        with pytest.raises(CatalogUnreachableError, match=rf"{url}.*within 1.0 s"):
            xlc.load_stac(url, bbox=(15.4, 47.0, 15.5, 47.1), timeout=1.0)
        for c, _ in conns:
            c.close()


# --- searches against a real STAC API on loopback ------------------------------------------


TWN_BBOX = (15.004, 47.845, 15.012, 47.851)  # inside the 33TWN COGs' footprint


def test_search_bbox_datetime_and_cloud(server, catalog):
    img = xlc.load_stac(server, bbox=TWN_BBOX, datetime="2022-01-01/2022-02-28", bands=["red"])
    assert sorted(img.attrs["stac_items"]) == sorted(TWN)
    img = xlc.load_stac(
        server, bbox=TWN_BBOX, datetime="2022-01-01/2022-02-28", max_cloud=60, bands=["red"]
    )
    assert img.attrs["stac_items"] == TWN[:2]  # 75 % cloud dropped by the server's filter
    img = xlc.load_stac(server, bbox=TWN_BBOX, datetime="2022-01-25/2022-02-28", bands=["red"])
    assert sorted(img.attrs["stac_items"]) == sorted(TWN[1:])
    # the grid is the bbox snapped outward to 10 m, in the bbox centre's UTM zone
    assert img.rio.crs.to_epsg() == 32633
    assert 58 <= img.sizes["x"] <= 64 and 65 <= img.sizes["y"] <= 70  # 600 x 670 m


def test_search_matches_loading_the_same_items(server, catalog):
    via_api = xlc.load_stac(server, bbox=TWN_BBOX, max_cloud=60, bands=["red", "nir"])
    direct = xlc.load_stac(catalog.by_id(*TWN[:2]), bbox=TWN_BBOX, bands=["red", "nir"])
    assert via_api.attrs["stac_items"] == direct.attrs["stac_items"]
    np.testing.assert_array_equal(via_api.values, direct.values)
    assert not np.isnan(via_api.values).all()


def test_search_intersects_max_items_filter_passthrough(pc_server, catalog):
    point = {"type": "Point", "coordinates": [-106.175, 40.64]}  # the 13TDE COGs
    img = xlc.load_stac(pc_server, intersects=point, bands=["red"], crs="EPSG:32613")
    assert img.attrs["stac_items"] == TDE_PC  # least cloudy first
    assert list(img.band.values) == ["red"]  # Planetary Computer's "B04", named as asked
    img = xlc.load_stac(pc_server, intersects=point, bands=["red"], max_items=1)
    assert len(img.attrs["stac_items"]) == 1
    s2a = {"op": "=", "args": [{"property": "platform"}, "Sentinel-2A"]}
    img = xlc.load_stac(pc_server, intersects=point, bands=["red"], filter=s2a)
    assert img.attrs["stac_items"] == [TDE_PC[1]]
    with pytest.raises(NoItemsError, match="max_cloud=60"):  # S2A's is 66.8 %
        xlc.load_stac(pc_server, intersects=point, bands=["red"], filter=s2a, max_cloud=60)


def test_naip_search(pc_server, catalog):
    bbox = (-73.1915, 44.0018, -73.1895, 44.0026)
    img = xlc.load_stac(pc_server, preset="naip", bbox=bbox, datetime="2021")
    assert len(img.attrs["stac_items"]) == 2
    assert img.rio.crs.to_epsg() == 26918
    with pytest.raises(StacQueryError, match="no cloud-cover property"):
        xlc.load_stac(pc_server, preset="naip", bbox=bbox, max_cloud=10)


def test_modifier_sees_every_page(server):
    pages = []

    def sign(obj):
        pages.append(obj)
        for item in obj.get("features", []):
            item["properties"]["signed"] = True

    img = xlc.load_stac(server, bbox=TWN_BBOX, bands=["red"], modifier=sign)
    assert pages and all(p.get("type") == "FeatureCollection" for p in pages)
    assert len(img.attrs["stac_items"]) == 3


def test_no_items_repeats_the_query(server):
    with pytest.raises(NoItemsError, match=r"datetime='1999-01-01/1999-12-31'.*bbox"):
        xlc.load_stac(server, bbox=TWN_BBOX, datetime="1999-01-01/1999-12-31")


def test_planetary_computer_modifier_is_optional():
    from xlandcover.errors import MissingDependencyError

    pytest.importorskip("requests")
    try:
        import planetary_computer  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependencyError, match="pip install planetary-computer"):
            xlc.load_stac("http://127.0.0.1:9", modifier="planetary-computer", timeout=1)
    else:
        pytest.skip("planetary-computer is installed")


def test_cli_predicts_from_a_stac_search(server, tiny_package, tmp_path):
    from xlandcover.cli import main

    out = tmp_path / "map.tif"
    bbox = ",".join(str(v) for v in TWN_BBOX)
    argv = ["predict", "--stac", server, "--bbox", bbox, "--max-cloud", "60"]
    argv += ["--out", str(tmp_path / "map.zarr"), "--scheduler", "local", "--workers", "1"]
    assert main([*argv, "--model", str(tiny_package.path), "--cog", str(out)]) == 0
    with rasterio.open(out) as src:
        assert src.crs.to_epsg() == 32633
        assert src.res == (10.0, 10.0)
        labels = src.read(1)
    assert set(np.unique(labels)) <= {1, 2, 5, 7, 255}
    assert (labels != 255).mean() > 0.5
    assert main(["predict", "--model", str(tiny_package.path), "--cog", str(out)]) == 2


def test_query_is_passed_through_to_the_search(server, monkeypatch):
    from pystac_client import Client

    seen = []
    real = Client.search

    def spy(self, **kwargs):
        seen.append(kwargs)
        return real(self, **kwargs)

    monkeypatch.setattr(Client, "search", spy)
    from pystac_client.warnings import DoesNotConformTo

    query = {"s2:mgrs_tile": {"eq": "33TWN"}}
    with pytest.warns(DoesNotConformTo, match="QUERY"):  # this server has no query extension
        xlc.load_stac(server, bbox=TWN_BBOX, bands=["red"], query=query, max_cloud=60)
    assert seen[0]["query"] == query  # this API filters clouds with CQL2, so query is ours
    assert seen[0]["filter"] == {
        "op": "<=",
        "args": [{"property": "eo:cloud_cover"}, 60],
    }
    assert seen[0]["collections"] == ["sentinel-2-l2a"]


# --- searched region by region (continental jobs) ------------------------------------------

NAIP_BBOX = (-73.1915, 44.0018, -73.1895, 44.0026)  # both years' NW and NE quads
NAIP_GRID = {"preset": "naip", "bbox": NAIP_BBOX, "crs": "EPSG:26918", "resolution": 0.6}


def _spy_searches(monkeypatch) -> list[list[str]]:
    from xlandcover.stac import _regions

    seen: list[list[str]] = []
    real = _regions.search_items

    def spy(*args, **kwargs):
        try:
            items = real(*args, **kwargs)
        except NoItemsError:
            seen.append([])
            raise
        seen.append(sorted(i["id"] for i in items))
        return items

    monkeypatch.setattr(_regions, "search_items", spy)
    return seen


def test_a_search_per_region_gives_the_pixels_of_one_search(pc_server, monkeypatch):
    searches = _spy_searches(monkeypatch)
    whole = xlc.load_stac(pc_server, chunks=32, **NAIP_GRID)
    with raise_if_dask_computes():
        regional = xlc.load_stac(pc_server, chunks=32, search_region=2, **NAIP_GRID)
    assert searches == []  # nothing is searched before the pixels are asked for
    again = xlc.load_stac(pc_server, chunks=32, search_region=2, **NAIP_GRID)
    assert again.data.name == regional.data.name  # the same job, so --resume finds it
    assert regional.rio.transform() == whole.rio.transform()
    assert regional.shape == whole.shape and regional.data.chunksize == (4, 32, 32)
    np.testing.assert_allclose(regional.x.values, whole.x.values, rtol=0, atol=1e-6)
    np.testing.assert_allclose(regional.y.values, whole.y.values, rtol=0, atol=1e-6)
    got = regional.values
    assert np.isfinite(got).all()  # the four quads cover the box
    np.testing.assert_array_equal(got, whole.values)  # at region borders too
    rows, cols = regional.data.numblocks[1:]
    assert len(searches) == -(-rows // 2) * -(-cols // 2)  # one search per region
    # the regions saw only their own items, and together every item of the whole search
    assert min(len(s) for s in searches) < len(whole.attrs["stac_items"])
    assert set().union(*searches) == set(whole.attrs["stac_items"])


def test_a_job_searched_per_region_maps_as_one_search(pc_server, tiny_package, tmp_path,
                                                      monkeypatch):  # fmt: skip
    from distributed import Client

    from xlandcover.output import _resume, write_zarr_resumable
    from xlandcover.stac import _regions

    monkeypatch.setattr(_resume, "REGION_CHUNKS", 2)  # write regions = search regions
    monkeypatch.setattr(_regions, "READ_CHUNKS", 24)  # each chunk read in ragged pieces
    searches = _spy_searches(monkeypatch)
    grid = {**NAIP_GRID, "model": tiny_package, "chunks": 64}
    want = xlc.predict(xlc.load_stac(pc_server, **grid), tiny_package, chunks=None).values
    img = xlc.load_stac(pc_server, search_region=2, **grid)
    labels = xlc.predict(img, tiny_package, chunks=None)
    with Client(processes=False, n_workers=1, threads_per_worker=2) as client:
        write_zarr_resumable(labels, tmp_path / "map.zarr", client=client, progress=False)
    got = xr.open_zarr(tmp_path / "map.zarr", consolidated=False)["landcover"].values
    assert (got != 255).mean() > 0.3
    np.testing.assert_array_equal(got, want)  # windows across region borders see the same
    rows, cols = img.data.numblocks[1:]
    assert len(searches) == -(-rows // 2) * -(-cols // 2) > 1  # each region searched once


def test_search_per_region_needs_what_fixes_the_grid(pc_server, catalog):
    with pytest.raises(StacQueryError, match="pass resolution="):
        xlc.load_stac(pc_server, preset="naip", bbox=NAIP_BBOX, search_region=2)
    with pytest.raises(StacQueryError, match="give the API's URL"):
        xlc.load_stac(catalog.collection("naip"), preset="naip", search_region=2)
    with pytest.raises(StacQueryError, match="needs a composite"):
        xlc.load_stac(pc_server, composite=None, search_region=2, **NAIP_GRID)
    with pytest.raises(StacQueryError, match="chunks per side"):
        xlc.load_stac(pc_server, search_region=0, **NAIP_GRID)
