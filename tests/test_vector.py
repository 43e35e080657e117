"""rasterize_labels / rasterize_features: equal to rasterising the whole table for any chunking,
lazy, class ids and names, overlaps, points, other CRSs, file formats and clear errors."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio.features
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

import xlandcover as xlc
from xlandcover.errors import (
    InputNotFoundError,
    LabelAlignmentError,
    MissingCRSError,
    UnknownClassError,
    VectorInputError,
    VectorReadError,
)
from xlandcover.vector import TOUCH_EPSILON, disc_radius

from .conftest import ZION, make_image, raise_if_dask_computes

H, W = 60, 70
IMG = make_image(H, W)  # 10 m pixels from (300000, 4100000), EPSG:32612
T = IMG.rio.transform()
CLASSES = [
    {"id": 1, "name": "water", "color": "#1f78b4"},
    {"id": 2, "name": "forest", "color": "#33a02c"},
    {"id": 5, "name": "built", "color": "#e31a1c"},
]


def px(col: float, row: float) -> tuple[float, float]:
    """CRS coordinates of a (fractional) pixel position; quarter pixels are exact floats."""
    return 300_000.0 + 10.0 * col, 4_100_000.0 - 10.0 * row


def reference(table: gpd.GeoDataFrame, values, *, all_touched=False, radius=0.0, fill=255,
              dtype="uint8") -> np.ndarray:  # fmt: skip
    """rasterio.features.rasterize of the whole table at once, in table order."""
    geoms = table.to_crs(IMG.rio.crs).geometry.to_numpy() if table.crs else table.geometry
    shapes = []
    for g, v in zip(geoms, values, strict=True):
        if g is None or g.is_empty:
            continue
        if radius and g.geom_type in ("Point", "MultiPoint"):
            g = shapely.buffer(g, disc_radius(radius * 10.0), quad_segs=16)
        if all_touched:  # exact touches count (GDAL's rule alone depends on the chunking)
            g = shapely.buffer(g, TOUCH_EPSILON * 10.0, quad_segs=2)
        shapes.append((g, int(v)))
    return rasterio.features.rasterize(shapes, out_shape=(H, W), transform=T, fill=fill,
                                       all_touched=all_touched, dtype=dtype)  # fmt: skip


quarter = st.integers(-40, 4 * W + 40).map(lambda v: v / 4)  # may fall outside the image
quarter_row = st.integers(-40, 4 * H + 40).map(lambda v: v / 4)
point = st.tuples(quarter, quarter_row)


@st.composite
def geometry(draw):
    kind = draw(st.sampled_from(["box", "triangle", "line", "point", "multi", "empty"]))
    if kind == "empty":
        return shapely.Polygon()
    pts = [px(*draw(point)) for _ in range(3)]
    if kind == "point":
        return shapely.Point(pts[0])
    if kind == "line":
        return shapely.LineString(pts)
    if kind == "triangle":
        poly = shapely.Polygon(pts)
        return poly if poly.area > 0 else shapely.Point(pts[0])
    (x0, y0), (x1, y1) = pts[0], pts[1]
    box = shapely.box(min(x0, x1), min(y0, y1), max(x0, x1) + 10, max(y0, y1) + 10)
    if kind == "box":
        return box
    return shapely.MultiPolygon([box, shapely.box(*px(5, 50), *px(9, 46))])


@settings(max_examples=60, deadline=None)
@given(
    geoms=st.lists(geometry(), min_size=1, max_size=8),
    chunk_rows=st.integers(7, 64),
    chunk_cols=st.integers(7, 72),
    all_touched=st.booleans(),
    radius=st.sampled_from([0.0, 1.5]),
    crs=st.sampled_from(["EPSG:32612", "EPSG:4326"]),
)
def test_equals_rasterising_the_whole_table_for_any_chunking(
    geoms, chunk_rows, chunk_cols, all_touched, radius, crs
):
    # a big polygon under the others so the image is always hit
    geoms = [shapely.box(*px(10, 40), *px(30, 20)), *geoms]
    values = np.arange(1, len(geoms) + 1) % 7 + 1
    table = gpd.GeoDataFrame({"class": values}, geometry=geoms, crs="EPSG:32612").to_crs(crs)
    like = IMG.chunk({"y": chunk_rows, "x": chunk_cols})
    labels = xlc.rasterize_labels(table, like, column="class", all_touched=all_touched,
                                  point_radius=radius)  # fmt: skip
    assert labels.chunks == like.chunks[1:]
    want = reference(table, values, all_touched=all_touched, radius=radius)
    np.testing.assert_array_equal(labels.values, want)
    features = xlc.rasterize_features(table, like, all_touched=all_touched, point_radius=radius)
    want_f = reference(table, np.arange(1, len(geoms) + 1), all_touched=all_touched,
                       radius=radius, fill=0, dtype="uint32")  # fmt: skip
    np.testing.assert_array_equal(features.values, want_f)
    # the winning feature is the one whose class was burnt
    f = features.values
    np.testing.assert_array_equal(np.where(f > 0, values[np.maximum(f, 1) - 1], 255), want)


def test_another_crs_lands_where_the_original_does():
    """Reprojected to EPSG:4326 and back, polygons label the same pixels but at boundaries."""
    geoms = [shapely.box(*px(3.3, 50.2), *px(40.7, 8.1)), shapely.box(*px(30, 55), *px(66, 30))]
    table = gpd.GeoDataFrame({"class": [1, 2]}, geometry=geoms, crs="EPSG:32612")
    native = xlc.rasterize_labels(table, IMG, column="class").values
    wgs84 = xlc.rasterize_labels(table.to_crs(4326), IMG, column="class").values
    assert (native == wgs84).mean() > 0.99
    assert set(np.unique(native)) == {1, 2, 255}


def test_building_the_raster_computes_nothing_and_keeps_the_grid():
    like = IMG.chunk({"y": 16, "x": 16})
    table = gpd.GeoDataFrame({"class": [1]}, geometry=[shapely.box(*px(1, 9), *px(9, 1))],
                             crs="EPSG:32612")  # fmt: skip
    with raise_if_dask_computes():
        labels = xlc.rasterize_labels(table, like, column="class", classes=CLASSES)
    assert labels.dims == ("y", "x") and labels.dtype == np.uint8
    assert labels.rio.crs == IMG.rio.crs and labels.rio.transform() == T
    assert labels.rio.nodata == 255 and labels.attrs["class_names"] == ["water", "forest", "built"]
    np.testing.assert_array_equal(labels.x, IMG.x)
    # each chunk rasterises only the geometries meeting it: the far chunks hold none
    graph = dict(labels.data.__dask_graph__())
    n_geoms = sorted(len(task[1]) for task in graph.values() if isinstance(task, tuple))
    assert n_geoms[0] == 0 and n_geoms[-1] == 1


def test_class_names_map_through_the_classes_and_ids_stay_ids():
    geoms = [shapely.box(*px(0, 10), *px(10, 0)), shapely.box(*px(20, 10), *px(30, 0))]
    names = gpd.GeoDataFrame({"cover": ["forest", "built"]}, geometry=geoms, crs="EPSG:32612")
    labels = xlc.rasterize_labels(names, IMG, column="cover", classes=CLASSES).values
    assert labels[5, 5] == 2 and labels[5, 25] == 5 and labels[30, 30] == 255
    ids = gpd.GeoDataFrame({"cover": [5.0, 1.0]}, geometry=geoms, crs="EPSG:32612")
    labels = xlc.rasterize_labels(ids, IMG, column="cover").values
    assert labels[5, 5] == 5 and labels[5, 25] == 1


@pytest.mark.parametrize(
    ("overlap", "winner"), [("last", 2), ("first", 1), ("smallest", 2), ("smallest-first", 2)]
)
def test_overlap_rule(overlap, winner):
    big = shapely.box(*px(0, 40), *px(40, 0))
    small = shapely.box(*px(10, 20), *px(20, 10))
    geoms, values = ([big, small], [1, 2])
    if overlap == "smallest-first":  # the small one first in the table still wins
        geoms, values, overlap = [small, big], [2, 1], "smallest"
    table = gpd.GeoDataFrame({"c": values}, geometry=geoms, crs="EPSG:32612")
    labels = xlc.rasterize_labels(table, IMG.chunk({"y": 13, "x": 13}), column="c",
                                  overlap=overlap).values  # fmt: skip
    assert labels[15, 15] == winner and labels[35, 35] == 1


def test_points_label_their_pixel_or_a_disc():
    table = gpd.GeoDataFrame({"c": [1]}, geometry=[shapely.Point(px(20.5, 30.5))], crs=32612)
    one = xlc.rasterize_labels(table, IMG, column="c").values
    assert (one == 1).sum() == 1 and one[30, 20] == 1
    disc = xlc.rasterize_labels(table, IMG, column="c", point_radius=2).values
    rows, cols = np.nonzero(disc == 1)
    assert ((rows - 30) ** 2 + (cols - 20) ** 2 <= 4).all() and len(rows) == 13


@pytest.mark.parametrize("suffix", [".gpkg", ".geojson", ".shp", ".parquet"])
def test_every_file_format_reads_the_same(tmp_path, suffix):
    geoms = [shapely.box(*px(0, 10), *px(10, 0)), shapely.box(*px(40, 50), *px(50.5, 40.5))]
    table = gpd.GeoDataFrame({"class": [1, 2]}, geometry=geoms, crs="EPSG:32612")
    path = tmp_path / f"labels{suffix}"
    if suffix == ".parquet":
        table.to_parquet(path)
    else:
        table.to_file(path)
    from_file = xlc.rasterize_labels(path, IMG, column="class").values
    np.testing.assert_array_equal(from_file, xlc.rasterize_labels(table, IMG, column="class"))


def test_pixel_grid_images_take_tables_without_crs():
    img = make_image(40, 40, crs=None).assign_coords(
        x=np.arange(40) + 0.5, y=np.arange(40) + 0.5
    )  # the grid open_raster(..., pixel_grid=True) gives: 1 unit per pixel, rows downwards
    img.attrs["xlandcover_pixel_grid"] = 1
    table = gpd.GeoDataFrame({"c": [3]}, geometry=[shapely.Point(12.5, 7.5)])
    labels = xlc.rasterize_labels(table, img, column="c")
    assert labels.values[7, 12] == 3 and (labels.values == 3).sum() == 1
    chips = xlc.sample_chips(img, labels, size=16, stride=8, classes=[3])
    assert chips.table["labelled"].min() == 1


def test_real_zion_polygons_match_the_nlcd_they_were_drawn_from(tmp_path):
    """Polygons vectorised from the real NLCD (a window of it) burn back to the same pixels."""
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(ZION / "nlcd_generalized_on_landsat_grid.tif") as src:
        window = Window(300, 400, 96, 80)
        nlcd = src.read(1, window=window)
        transform = src.window_transform(window)
        crs = src.crs
    found = rasterio.features.shapes(nlcd, transform=transform)
    shapes = [(shapely.geometry.shape(g), int(v)) for g, v in found if v != 0]
    table = gpd.GeoDataFrame({"nlcd": [v for _, v in shapes]}, geometry=[g for g, _ in shapes],
                             crs=crs).to_crs(4326)  # fmt: skip
    path = tmp_path / "zion.gpkg"
    table.to_file(path)
    img = xlc.open_raster(ZION / "landsat8_b2345_stack.tif", chunks=32)[
        :, 400 : 400 + 80, 300 : 300 + 96
    ]
    labels = xlc.rasterize_labels(path, img, column="nlcd").values
    labelled = nlcd != 0
    assert (labels[labelled] == nlcd[labelled]).mean() > 0.99


# --- errors ------------------------------------------------------------------------------------

GEOMS = [shapely.box(*px(0, 10), *px(10, 0))]


def test_error_no_crs():
    table = gpd.GeoDataFrame({"class": [1]}, geometry=GEOMS)
    with pytest.raises(MissingCRSError, match="set_crs"):
        xlc.rasterize_labels(table, IMG, column="class")


def test_error_label_column_missing_names_the_columns():
    table = gpd.GeoDataFrame({"Class": [1]}, geometry=GEOMS, crs=32612)
    with pytest.raises(VectorInputError, match=r"did you mean 'Class'\?.*label_column"):
        xlc.rasterize_labels(table, IMG, column="class")


def test_error_class_names_not_in_the_class_list():
    table = gpd.GeoDataFrame({"c": ["forest", "forrest", "urban"]}, geometry=GEOMS * 3, crs=32612)
    with pytest.raises(UnknownClassError, match=r"'forrest' \(did you mean 'forest'\?\), 'urban'"):
        xlc.rasterize_labels(table, IMG, column="c", classes=CLASSES)
    with pytest.raises(UnknownClassError, match="pass `classes`"):
        xlc.rasterize_labels(table, IMG, column="c")
    ids = gpd.GeoDataFrame({"c": [1, 3]}, geometry=GEOMS * 2, crs=32612)
    with pytest.raises(UnknownClassError, match=r"class ids \[3\]"):
        xlc.rasterize_labels(ids, IMG, column="c", classes=CLASSES)
    missing = gpd.GeoDataFrame({"c": [1.0, np.nan]}, geometry=GEOMS * 2, crs=32612)
    with pytest.raises(VectorInputError, match="1 of 2 rows have no value"):
        xlc.rasterize_labels(missing, IMG, column="c")


def test_error_geometries_that_miss_the_image():
    far = gpd.GeoDataFrame({"c": [1]}, geometry=[shapely.box(*px(500, 900), *px(510, 890))],
                           crs=32612)  # fmt: skip
    with pytest.raises(
        LabelAlignmentError, match=r"none of the 1 geometries .* overlaps the image"
    ):
        xlc.rasterize_labels(far, IMG, column="c")
    swapped = gpd.GeoDataFrame({"c": [1]}, geometry=GEOMS, crs=4326)  # metres declared degrees
    with pytest.raises(LabelAlignmentError, match="declares the CRS"):
        xlc.rasterize_labels(swapped, IMG, column="c")


def test_error_unreadable_or_missing_file(tmp_path):
    bad = tmp_path / "labels.gpkg"
    bad.write_bytes(b"this is not a GeoPackage")
    with pytest.raises(VectorReadError, match=r"cannot read .*labels.gpkg"):
        xlc.rasterize_labels(bad, IMG, column="c")
    with pytest.raises(InputNotFoundError):
        xlc.rasterize_labels(tmp_path / "none.gpkg", IMG, column="c")
