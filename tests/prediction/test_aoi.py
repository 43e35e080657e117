"""predict(..., aoi=...): chunks outside never read or run, nodata outside, the halo rule,
chunk independence, and the errors."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
import xarray as xr

import xlandcover as xlc
from xlandcover.errors import AreaOfInterestError, AreaOutsideRasterError, MissingCRSError
from xlandcover.model import NODATA_LABEL

from ..conftest import make_image

H, W = 256, 320


@pytest.fixture(scope="module")
def scene() -> xr.DataArray:
    return make_image(H, W, seed=3)


@pytest.fixture(scope="module")
def reference(scene, tiny_package) -> np.ndarray:
    return xlc.predict(scene, tiny_package, chunks=64).values


def _px(img: xr.DataArray, col: float, row: float) -> tuple[float, float]:
    """CRS coordinates of the pixel position (col, row)."""
    return img.rio.transform() * (col, row)


def _triangle(img: xr.DataArray) -> shapely.Polygon:
    """A slanted triangle over part of the scene: its bounding box leaves the lower right
    chunks of a 64 px chunking untouched."""
    return shapely.Polygon([_px(img, 10.3, 5.7), _px(img, 150.2, 20.1), _px(img, 30.9, 140.4)])


def _centres_inside(img: xr.DataArray, geom) -> np.ndarray:
    rows, cols = np.mgrid[0 : img.sizes["y"], 0 : img.sizes["x"]]
    xs, ys = img.rio.transform() * (cols + 0.5, rows + 0.5)
    return shapely.contains_xy(geom, xs, ys)


def test_outside_is_nodata_inside_equals_the_prediction_without_area(
    scene, tiny_package, reference
):
    geom = _triangle(scene)
    out = xlc.predict(scene, tiny_package, chunks=64, aoi=geom).values
    inside = _centres_inside(scene, geom)
    assert 0.1 < inside.mean() < 0.5
    np.testing.assert_array_equal(out[inside], reference[inside])  # real neighbours: exact
    assert (out[~inside] == NODATA_LABEL).all()


@pytest.mark.parametrize("chunks", [72, 100, 160, 512])
def test_result_does_not_depend_on_the_chunking(scene, tiny_package, chunks):
    geom = _triangle(scene)
    ref = xlc.predict(scene, tiny_package, chunks=64, aoi=geom).values
    out = xlc.predict(scene, tiny_package, chunks=chunks, aoi=geom).values
    np.testing.assert_array_equal(out, ref)


def test_probabilities_are_nan_outside(scene, tiny_package):
    geom = _triangle(scene)
    probs = xlc.predict(scene, tiny_package, chunks=64, aoi=geom, output="probabilities").values
    full = xlc.predict(scene, tiny_package, chunks=64, output="probabilities").values
    inside = _centres_inside(scene, geom)
    assert np.isnan(probs[:, ~inside]).all()
    np.testing.assert_array_equal(probs[:, inside], full[:, inside])


def test_chunks_outside_are_never_read_nor_run(scene, tiny_package, monkeypatch):
    """A spy on the source's blocks and on the model's windows: only chunks meeting the area
    (and, for their halo, their direct neighbours) are read; windows run only near it."""
    from xlandcover.prediction import _engine

    read: list[tuple[int, int]] = []

    def spy(block, block_info=None):
        read.append(tuple(block_info[0]["chunk-location"][1:]))
        return block

    source = scene.chunk({"band": -1, "y": 64, "x": 64})
    source = source.copy(data=source.data.map_blocks(spy, dtype=source.dtype))
    windows: list[tuple[int, int]] = []
    real = _engine.run_chunk

    def counting(block, valid, starts, **kw):
        windows.extend(starts)
        return real(block, valid, starts, **kw)

    monkeypatch.setattr(_engine, "run_chunk", counting)
    # a small square inside chunk (1, 1) (rows and columns 64..128)
    geom = shapely.box(*_px(source, 70, 120), *_px(source, 120, 70))
    out = xlc.predict(source, tiny_package, chunks=None, aoi=geom).compute(scheduler="sync")
    grid = (H // 64, W // 64)
    assert set(read) <= {(i, j) for i in range(0, 3) for j in range(0, 3)}
    assert (1, 1) in read and (3, 4) not in read
    assert len(set(read)) < grid[0] * grid[1] / 2
    # every window run touches the square's chunk's interior; none starts far away
    assert windows and all(0 <= sy < 128 and 0 <= sx < 128 for sy, sx in windows)
    ref = xlc.predict(scene, tiny_package, chunks=64).values
    inside = _centres_inside(scene, geom)
    assert inside.sum() == 50 * 50
    np.testing.assert_array_equal(out.values[inside], ref[inside])
    assert (out.values[~inside] == NODATA_LABEL).all()


def test_area_in_another_crs_from_a_file(scene, tiny_package, reference, tmp_path):
    gpd = pytest.importorskip("geopandas")
    geom = _triangle(scene)
    path = tmp_path / "aoi.gpkg"
    gpd.GeoDataFrame(geometry=[geom], crs=scene.rio.crs).to_crs("EPSG:4326").to_file(path)
    out = xlc.predict(scene, tiny_package, chunks=64, aoi=path).values
    inside = _centres_inside(scene, geom)
    # reprojected there and back: pixels whose centre is within a hair of the edge may differ
    differ = (out != np.where(inside, reference, NODATA_LABEL)).sum()
    assert differ <= 2
    assert (out[inside] != NODATA_LABEL).sum() >= inside.sum() - 2


def test_geodataframe_of_several_polygons_is_their_union(scene, tiny_package, reference):
    gpd = pytest.importorskip("geopandas")
    a = shapely.box(*_px(scene, 0, 60), *_px(scene, 60, 0))
    b = shapely.box(*_px(scene, 200, 250), *_px(scene, 300, 180))
    table = gpd.GeoDataFrame(geometry=[a, b], crs=scene.rio.crs)
    out = xlc.predict(scene, tiny_package, chunks=64, aoi=table).values
    inside = _centres_inside(scene, shapely.union(a, b))
    np.testing.assert_array_equal(out, np.where(inside, reference, NODATA_LABEL))


def test_area_that_misses_the_raster(scene, tiny_package):
    far = shapely.box(0, 0, 1000, 1000)
    with pytest.raises(AreaOutsideRasterError, match="does not overlap the raster"):
        xlc.predict(scene, tiny_package, aoi=far)


def test_empty_invalid_and_arealess_geometries(scene, tiny_package):
    with pytest.raises(AreaOfInterestError, match="empty"):
        xlc.predict(scene, tiny_package, aoi=shapely.Polygon())
    x0, y0 = _px(scene, 0, 0)
    bowtie = shapely.Polygon([(x0, y0), (x0 + 500, y0 - 500), (x0 + 500, y0), (x0, y0 - 500)])
    with pytest.raises(AreaOfInterestError, match=r"not a valid geometry.*make_valid"):
        xlc.predict(scene, tiny_package, aoi=bowtie)
    with pytest.raises(AreaOfInterestError, match="no area"):
        xlc.predict(scene, tiny_package, aoi=shapely.Point(x0 + 50, y0 - 50))
    with pytest.raises(AreaOfInterestError, match="shapely geometry, a GeoDataFrame"):
        xlc.predict(scene, tiny_package, aoi=[1, 2, 3, 4])


def test_vector_file_without_crs(scene, tiny_package, tmp_path):
    gpd = pytest.importorskip("geopandas")
    path = tmp_path / "nocrs.gpkg"
    with pytest.warns(UserWarning, match="crs"):
        gpd.GeoDataFrame(geometry=[_triangle(scene)]).to_file(path)
    with pytest.raises(MissingCRSError, match="has no CRS"):
        xlc.predict(scene, tiny_package, aoi=path)
    # GeoJSON is EPSG:4326 by definition: UTM metres read as degrees cannot be placed
    path = tmp_path / "utm-as-degrees.geojson"
    with pytest.warns(UserWarning, match="crs"):
        gpd.GeoDataFrame(geometry=[_triangle(scene)]).to_file(path)
    with pytest.raises(AreaOfInterestError, match="cannot be reprojected"):
        xlc.predict(scene, tiny_package, aoi=path)


def test_building_the_graph_computes_nothing(scene, tiny_package):
    from ..conftest import raise_if_dask_computes

    with raise_if_dask_computes():
        xlc.predict(scene.chunk({"y": 64, "x": 64}), tiny_package, aoi=_triangle(scene))


def test_cli_aoi(scene, tiny_package, reference, tmp_path):
    gpd = pytest.importorskip("geopandas")
    from xlandcover.cli import main

    tif, aoi = tmp_path / "scene.tif", tmp_path / "aoi.gpkg"
    scene.rio.to_raster(tif)
    geom = _triangle(scene)
    gpd.GeoDataFrame(geometry=[geom], crs=scene.rio.crs).to_file(aoi)
    args = ["predict", str(tif), "--model", str(tiny_package.path), "--chunks", "64"]
    args += ["--bands", "red,green,blue", "--scheduler", "inprocess", "--aoi", str(aoi)]
    assert main([*args, "--out", str(tmp_path / "out.zarr")]) == 0
    out = xr.open_zarr(tmp_path / "out.zarr", consolidated=False)["landcover"].values
    inside = _centres_inside(scene, geom)
    np.testing.assert_array_equal(out, np.where(inside, reference, NODATA_LABEL))
    far = tmp_path / "far.gpkg"
    gpd.GeoDataFrame(geometry=[shapely.box(0, 0, 10, 10)], crs=scene.rio.crs).to_file(far)
    args[-1] = str(far)
    assert main([*args, "--out", str(tmp_path / "far.zarr")]) == 1
    assert not (tmp_path / "far.zarr").exists()


def test_cli_dry_run_reports_the_job_and_writes_nothing(scene, tiny_package, tmp_path, caplog):
    import logging

    gpd = pytest.importorskip("geopandas")
    from xlandcover.cli import main

    tif, aoi = tmp_path / "scene.tif", tmp_path / "aoi.gpkg"
    scene.rio.to_raster(tif)
    # the upper left 64 x 128 px: chunks (0, 0) and (0, 1) of 64 px
    box = shapely.box(*_px(scene, 0.5, 63.5), *_px(scene, 127.5, 0.5))
    gpd.GeoDataFrame(geometry=[box], crs=scene.rio.crs).to_file(aoi)
    before = sorted(p.name for p in tmp_path.iterdir())
    caplog.set_level(logging.INFO, logger="xlandcover")
    args = ["predict", str(tif), "--model", str(tiny_package.path), "--chunks", "64"]
    args += ["--bands", "red,green,blue", "--aoi", str(aoi), "--dry-run"]
    assert main([*args, "--out", str(tmp_path / "out.zarr"), "--cog", str(tmp_path / "o.tif")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, no lock
    text = caplog.text
    assert "chunks: 2 of 20 meet the area of interest (64 x 64 px chunks)" in text
    # window 64, overlap 16 (stride 48): 2 windows touch rows 0-64, 2 + 2 columns 0-64, 64-128
    assert "windows: 8 of 64 x 64 px (overlap 16 px)" in text
    assert "area: 0.8 km2 in the chunks that run (100 m2 per pixel)" in text
    assert f"output: {W} x {H} px, 80.0 KiB uncompressed" in text
    assert "hours per worker" in text
