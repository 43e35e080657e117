"""--cog-tiles: one COG per tile of a fixed grid, a VRT mosaic, a STAC catalog with classes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import shapely
import xarray as xr

import xlandcover as xlc
from xlandcover.errors import OutputExistsError, OverwriteRefusedError
from xlandcover.model import NODATA_LABEL
from xlandcover.output import write_cog_tiles

from ..conftest import make_image


@pytest.fixture(scope="module")
def labels(tiny_package) -> xr.DataArray:
    img = make_image(1024, 1024, seed=8).chunk({"band": -1, "y": 128, "x": 128})
    t = img.rio.transform()
    # the upper left and the lower right corners: tiles (0, 0) and (1, 1) of 512 px
    area = shapely.union(
        shapely.box(*t * (0, 300), *t * (300, 0)), shapely.box(*t * (700, 1024), *t * (1024, 700))
    )
    return xlc.predict(img, tiny_package, chunks=None, aoi=area)


def test_tiles_mosaic_and_catalog(labels, tmp_path):
    pystac = pytest.importorskip("pystac")
    out = tmp_path / "tiles"
    catalog_path = write_cog_tiles(labels, out, tile=512, job="job-1")
    expected = labels.values
    names = sorted(p.name for p in out.glob("tile-*.tif"))
    assert names == ["tile-0000-0000.tif", "tile-0001-0001.tif"]  # the others are outside
    with rasterio.open(out / "mosaic.vrt") as vrt:
        assert vrt.shape == (1024, 1024) and vrt.crs == labels.rio.crs
        assert vrt.transform == labels.rio.transform()
        np.testing.assert_array_equal(vrt.read(1), expected)
        assert vrt.nodata == NODATA_LABEL
        assert vrt.colormap(1)[2][:3] == (0x33, 0xA0, 0x2C)  # forest
    with rasterio.open(out / "tile-0001-0001.tif") as tif:
        np.testing.assert_array_equal(tif.read(1), expected[512:, 512:])
        assert tif.transform == labels.rio.transform() * rasterio.Affine.translation(512, 512)
    catalog = pystac.Catalog.from_file(catalog_path)
    items = sorted(catalog.get_items(recursive=True), key=lambda i: i.id)
    assert [i.id for i in items] == ["tile-0000-0000", "tile-0001-0001"]
    asset = items[1].assets["landcover"]
    assert asset.media_type == pystac.MediaType.COG
    assert asset.get_absolute_href() == str(out / "tile-0001-0001.tif")
    classes = asset.extra_fields["classification:classes"]
    assert [c["value"] for c in classes] == [1, 2, 5, 7, NODATA_LABEL]
    assert [c["description"] for c in classes[:2]] == ["water", "forest"]
    assert items[1].properties["proj:shape"] == [512, 512]
    lon, lat = shapely.centroid(shapely.geometry.shape(items[1].geometry)).coords[0]
    assert -114 < lon < -110 and 36 < lat < 38  # UTM 12N, x 300 km, y 4100 km: Utah/Arizona


def test_rerun_skips_finished_tiles_and_other_jobs_are_refused(labels, tmp_path):
    out = tmp_path / "tiles"
    write_cog_tiles(labels, out, tile=512, job="job-1")
    stamp = (out / "tile-0000-0000.tif").stat().st_mtime_ns
    write_cog_tiles(labels, out, tile=512, job="job-1")  # the same job: nothing to redo
    assert (out / "tile-0000-0000.tif").stat().st_mtime_ns == stamp
    with pytest.raises(OutputExistsError, match="holds the tiles of another job"):
        write_cog_tiles(labels, out, tile=512, job="job-2")
    write_cog_tiles(labels, out, tile=1024, job="job-2", overwrite=True)
    assert sorted(p.name for p in out.glob("tile-*.tif")) == ["tile-0000-0000.tif"]
    assert json.loads((out / "tiles.json").read_text())["xlandcover_output"]["job"] == "job-2"
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    with pytest.raises(OverwriteRefusedError, match="not xlandcover tiles"):
        write_cog_tiles(labels, foreign, tile=512, overwrite=True)
    assert (foreign / "notes.txt").read_text() == "keep"


def test_cli_cog_tiles(tiny_package, tmp_path, caplog):
    from xlandcover.cli import main

    tif = tmp_path / "scene.tif"
    make_image(640, 512, seed=9).rio.to_raster(tif)
    args = ["predict", str(tif), "--model", str(tiny_package.path), "--chunks", "128"]
    args += ["--bands", "red,green,blue", "--scheduler", "inprocess", "--tile-size", "512"]
    tiles = tmp_path / "tiles"
    assert main([*args, "--out", str(tmp_path / "a.zarr"), "--cog-tiles", str(tiles)]) == 0
    assert sorted(p.name for p in tiles.glob("tile-*.tif")) == [
        "tile-0000-0000.tif",
        "tile-0001-0000.tif",
    ]
    store = xr.open_zarr(tmp_path / "a.zarr", consolidated=False)["landcover"].values
    with rasterio.open(tiles / "mosaic.vrt") as vrt:
        np.testing.assert_array_equal(vrt.read(1), store)
    # another job (another window) into the same folder is refused, the tiles are kept
    other = [*args, "--window", "32", "--out", str(tmp_path / "b.zarr"), "--cog-tiles", str(tiles)]
    assert main(other) == 1
    assert "holds the tiles of another job" in caplog.text
    with rasterio.open(tiles / "mosaic.vrt") as vrt:
        np.testing.assert_array_equal(vrt.read(1), store)
