"""sample_chips: grid, out-of-core per-chip histograms, nodata filter, laziness and errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import xlandcover as xlc
from xlandcover.errors import (
    ChipSizeError,
    LabelAlignmentError,
    NoChipsError,
    RasterInputError,
    UnknownClassError,
)
from xlandcover.labels import labels_from_colors, open_color_mask
from xlandcover.windows import AxisGrid

from .conftest import DUBAI, ZION, make_image


def make_labels(image: xr.DataArray, ids=(1, 2, 5), seed: int = 0) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    values = rng.choice(np.asarray(ids, dtype=np.uint8), size=image.shape[1:])
    lab = xr.DataArray(values, dims=("y", "x"), coords={"y": image.y, "x": image.x})
    if image.rio.crs is not None:
        lab = lab.rio.write_crs(image.rio.crs)
    return lab


def reference_counts(labels: np.ndarray, rows, cols, size, ids) -> np.ndarray:
    return np.array(
        [
            [(labels[r : r + size, c : c + size] == i).sum() for i in ids]
            for r, c in zip(rows, cols, strict=True)
        ]
    )


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(40, 120),
    w=st.integers(40, 120),
    size=st.sampled_from([16, 24, 32]),
    stride_frac=st.sampled_from([0.5, 0.75, 1.0]),
    chunk=st.integers(13, 70),
)
def test_grid_covers_raster_and_counts_match_numpy(h, w, size, stride_frac, chunk):
    img = make_image(h, w)
    lab = make_labels(img)
    lab.values[:5, :5] = 0
    lab = lab.rio.write_nodata(0)
    stride = max(1, int(size * stride_frac))
    chips = xlc.sample_chips(
        img.chunk({"y": chunk, "x": chunk}),
        lab.chunk({"y": chunk + 3, "x": chunk}),  # labels chunked differently on purpose
        size=size,
        stride=stride,
        max_nodata=1.0,
    )
    t = chips.table
    assert chips.class_ids == (1, 2, 5)
    assert t["row"].max() + size == h and t["col"].max() + size == w  # edge chips end at edge
    assert t["row"].min() == 0 and t["col"].min() == 0
    steps = np.diff(np.unique(t["row"]))
    assert (steps <= stride).all() and (steps[:-1] == stride).all()
    want = reference_counts(lab.values, t["row"], t["col"], size, (1, 2, 5))
    np.testing.assert_array_equal(chips.counts, want)
    nodata = reference_counts(lab.values, t["row"], t["col"], size, (0,))[:, 0]
    np.testing.assert_array_equal(t["labelled"], size**2 - nodata)
    assert (t["nodata_frac"] == 0).all()  # image nodata only; unlabelled pixels are not nodata


def test_chip_bounds_are_in_crs_units():
    img = make_image(64, 64)
    chips = xlc.sample_chips(img, make_labels(img), size=32)
    first = chips.table.iloc[0]
    assert (first["minx"], first["maxy"]) == (300_000.0, 4_100_000.0)
    assert (first["maxx"], first["miny"]) == (300_320.0, 4_099_680.0)


def test_image_nodata_and_labelled_pixels_are_separate_rules():
    img = make_image(64, 64).rio.write_nodata(0)
    img.values[:, :32, :20] = 0  # image nodata: 20/32 of the top-left chip
    lab = make_labels(img).rio.write_nodata(0)
    lab.values[32:, 32:][:, :12] = 0  # label nodata: 12/32 of the bottom-right chip
    chips = xlc.sample_chips(img, lab, size=32, max_nodata=0.3)
    kept = set(zip(chips.table["row"], chips.table["col"], strict=True))
    assert kept == {(0, 32), (32, 0), (32, 32)}  # unlabelled pixels are not image nodata
    dense = xlc.sample_chips(img, lab, size=32, max_nodata=0.3, min_labelled=32 * 21)
    assert set(zip(dense.table["row"], dense.table["col"], strict=True)) == {(0, 32), (32, 0)}
    all_chips = xlc.sample_chips(img, lab, size=32, max_nodata=1.0)
    t = all_chips.table
    frac = {(r, c): f for r, c, f in t[["row", "col", "nodata_frac"]].itertuples(index=False)}
    assert frac[(0, 0)] == pytest.approx(20 / 32) and frac[(32, 32)] == 0.0
    labelled = {(r, c): n for r, c, n in t[["row", "col", "labelled"]].itertuples(index=False)}
    assert labelled[(0, 0)] == 32 * 12 and labelled[(32, 32)] == 32 * 20
    # counts only hold pixels with both image data and a label
    assert all_chips.counts[0].sum() == 32 * 12
    with pytest.raises(ChipSizeError, match="min_labelled"):
        xlc.sample_chips(img, lab, size=32, min_labelled=0)


def test_image_pixels_are_read_only_when_a_chip_is_used():
    img = make_image(96, 96).chunk({"y": 32, "x": 32})
    calls = []

    def spy(block):
        if block.size:  # dask probes with empty blocks for metadata
            calls.append(block.shape)
        return block

    watched = img.copy(data=img.data.map_blocks(spy, dtype=img.dtype))
    chips = xlc.sample_chips(watched, make_labels(img), size=32)
    assert calls == []  # an integer image without nodata: nothing to check per pixel
    image, labels, valid = chips.read(4)
    assert image.shape == (3, 32, 32) and labels.shape == (32, 32) and valid.all()
    np.testing.assert_array_equal(image, img.values[:, 32:64, 32:64])
    assert len(calls) == 1


def test_several_sources_with_groups():
    a, b = make_image(64, 64, seed=1), make_image(32, 96, seed=2)
    chips = xlc.sample_chips([a, b], [make_labels(a), make_labels(b)], size=32, groups=["x", "y"])
    assert list(chips.table.groupby("group").size()) == [4, 3]
    assert chips.table["chip"].tolist() == list(range(7))
    assert len(chips.subset(chips.table["group"] == "y")) == 3


def test_classes_declared_names_and_colors_kept():
    img = make_image(32, 32)
    classes = [
        xlc.ClassInfo(1, "water", "#0000ff"),
        xlc.ClassInfo(2, "forest"),
        xlc.ClassInfo(5, "x"),
    ]
    chips = xlc.sample_chips(img, make_labels(img), size=32, classes=classes)
    assert chips.classes == tuple(classes)


def test_error_labels_outside_declared_classes_names_the_values():
    img = make_image(32, 32)
    with pytest.raises(UnknownClassError, match=r"values \[5\]"):
        xlc.sample_chips(img, make_labels(img), size=16, classes=[1, 2])


def test_error_labels_not_on_the_image_grid():
    img = make_image(64, 64)
    lab = make_labels(img)
    with pytest.raises(LabelAlignmentError, match="reproject_match"):
        xlc.sample_chips(img, lab[:60], size=16)
    with pytest.raises(LabelAlignmentError, match="CRS"):
        xlc.sample_chips(img, lab.rio.write_crs("EPSG:32613"), size=16)
    shifted = lab.assign_coords(x=lab.x + 5.0)
    with pytest.raises(LabelAlignmentError, match="pixel grid"):
        xlc.sample_chips(img, shifted, size=16)


def test_error_chip_larger_than_raster_and_no_chips_left():
    img = make_image(40, 64)
    with pytest.raises(ChipSizeError, match="at most 40 px"):
        xlc.sample_chips(img, make_labels(img), size=48)
    lab = make_labels(img).rio.write_nodata(1)
    lab.values[:] = 1
    with pytest.raises(NoChipsError, match="min_labelled"):
        xlc.sample_chips(img, lab, size=16, classes=[2, 5])


def test_real_zion_labels_on_another_grid_are_refused_and_aligned_ones_count():
    img = xlc.open_raster(ZION / "landsat8_b2345_stack.tif", chunks=512)
    other = xlc.open_raster(ZION / "nlcd_generalized.tif", chunks=512)
    with pytest.raises(LabelAlignmentError):
        xlc.sample_chips(img, other, size=128)
    lab = xlc.open_raster(ZION / "nlcd_generalized_on_landsat_grid.tif", chunks=512)
    chips = xlc.sample_chips(img, lab, size=128, max_nodata=1.0)
    assert chips.class_ids == tuple(range(1, 9))
    t = chips.table.iloc[7]
    window = lab.values[0, t["row"] : t["row"] + 128, t["col"] : t["col"] + 128]
    np.testing.assert_array_equal(chips.counts[7], [(window == c).sum() for c in range(1, 9)])


def test_colour_masks_rgb_and_palette_from_dubai():
    colors = {(60, 16, 152): 1, (132, 41, 246): 2, (110, 193, 228): 3, (254, 221, 58): 4,
              (226, 169, 41): 5}  # fmt: skip
    ignore = [(155, 155, 155), (0, 0, 0)]
    rgb_path = DUBAI / "tile-1" / "masks" / "image_part_001.png"
    lab = open_color_mask(rgb_path, colors, ignore_colors=ignore, pixel_grid=True, chunks=256)
    raw = xlc.open_raster(rgb_path, pixel_grid=True, chunks=None).values
    values = lab.values
    assert lab.dims == ("y", "x") and lab.rio.nodata == 255
    for (r, g, b), cid in colors.items():
        hit = (raw[0] == r) & (raw[1] == g) & (raw[2] == b)
        assert (values[hit] == cid).all()
    assert set(np.unique(values)) <= {1, 2, 3, 4, 5, 255}
    with pytest.raises(UnknownClassError, match=r"\(60, 16, 152\)"):
        without_building = {k: v for k, v in colors.items() if v != 1}
        raw_mask = xlc.open_raster(rgb_path, pixel_grid=True, chunks=None)
        labels_from_colors(raw_mask, without_building, ignore_colors=ignore)
    palettes = [p for p in sorted(DUBAI.glob("tile-*/masks/*.png")) if _bands(p) == 1]
    pal = open_color_mask(palettes[0], colors, ignore_colors=ignore, pixel_grid=True)
    assert set(np.unique(pal.values)) <= {1, 2, 3, 4, 5, 255} and len(np.unique(pal.values)) > 1


def test_single_band_mask_without_palette_is_refused():
    img = make_image(16, 16)
    with pytest.raises(RasterInputError, match="3 bands"):
        labels_from_colors(img[:1], {(1, 2, 3): 1})


def _bands(path) -> int:
    import rasterio

    with rasterio.open(path) as src:
        return src.count


# --- sparse labels (points, polygons) ----------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    h=st.integers(40, 110),
    w=st.integers(40, 110),
    size=st.sampled_from([16, 24, 32]),
    stride_frac=st.sampled_from([0.5, 0.75, 1.0]),
    chunk=st.integers(9, 60),
    seed=st.integers(0, 1000),
    n_points=st.integers(1, 25),
)
def test_sparse_labels_every_labelled_pixel_in_a_chip_for_any_chunking(
    h, w, size, stride_frac, chunk, seed, n_points
):
    rng = np.random.default_rng(seed)
    stride = max(1, int(size * stride_frac))
    img = make_image(h, w)
    values = np.full((h, w), 255, dtype=np.uint8)
    values[rng.integers(0, h, n_points), rng.integers(0, w, n_points)] = 1
    side = size - stride + 1  # a patch this big always fits whole in one grid chip
    r, c = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    values[r : r + side, c : c + side] = 2
    lab = make_labels(img).copy(data=values).rio.write_nodata(255)
    feats = lab.copy(data=np.where(values == 2, 7, np.where(values == 1, 3, 0)).astype(np.uint32))
    chunked = xlc.sample_chips(
        img.chunk({"y": chunk, "x": chunk + 5}),
        lab.chunk(chunk),
        size=size,
        stride=stride,
        features=feats.chunk(chunk + 2),
    )
    whole = xlc.sample_chips(img, lab, size=size, stride=stride, features=feats)
    pd.testing.assert_frame_equal(chunked.table, whole.table)  # chunking changes nothing
    t = whole.table
    covered = np.zeros((h, w), dtype=bool)
    for row, col in t[["row", "col"]].to_numpy():
        covered[row : row + size, col : col + size] = True
        window = values[row : row + size, col : col + size]
        assert (window != 255).any()  # only chips holding labels are kept
    assert covered[values != 255].all()  # ... and they hold every labelled pixel
    whole_patch = (t["row"] <= r) & (t["row"] + size >= r + side)
    whole_patch &= (t["col"] <= c) & (t["col"] + size >= c + side)
    assert whole_patch.any()
    # chips sit on the dense grid (stride apart, the last row/column at the edge): they
    # overlap as that grid allows, no more
    assert set(t["row"]) <= set(AxisGrid(h, size, stride).starts.tolist())
    assert set(t["col"]) <= set(AxisGrid(w, size, stride).starts.tolist())
    for row, col, lminx, lmaxy, lmaxx, lminy in t[
        ["row", "col", "lminx", "lmaxy", "lmaxx", "lminy"]
    ].to_numpy():
        rr, cc = np.nonzero(values[int(row) : int(row) + size, int(col) : int(col) + size] != 255)
        assert lminx == 300_000.0 + 10.0 * (col + cc.min())
        assert lmaxx == 300_000.0 + 10.0 * (col + cc.max() + 1)
        assert lmaxy == 4_100_000.0 - 10.0 * (row + rr.min())
        assert lminy == 4_100_000.0 - 10.0 * (row + rr.max() + 1)
    for row, col, dominant, found in t[["row", "col", "feature", "features"]].to_numpy():
        window = feats.values[int(row) : int(row) + size, int(col) : int(col) + size]
        ids, counts = np.unique(window[window > 0], return_counts=True)
        assert found == tuple(ids.tolist())
        assert dominant == ids[counts == counts.max()].min()


def test_sparse_min_labelled_drops_chips_with_too_few():
    img = make_image(64, 64)
    values = np.full((64, 64), 255, dtype=np.uint8)
    values[5, 5] = 1  # a lone point in chip (0, 0)
    values[40:44, 40:44] = 2  # 16 px in chip (32, 32)
    lab = make_labels(img).copy(data=values).rio.write_nodata(255)
    chips = xlc.sample_chips(img, lab, size=32, min_labelled=4)
    assert chips.table[["row", "col"]].values.tolist() == [[32, 32]]
    assert chips.table["labelled"].tolist() == [16]


@pytest.mark.parametrize("max_pixels", [3 * 32 * 100, 64 * 2**20])
def test_reading_many_chips_at_once_equals_reading_each(max_pixels):
    img = make_image(200, 230).chunk({"y": 64, "x": 64})
    chips = xlc.sample_chips([img, img.isel(y=slice(0, 120))],
                             [make_labels(img), make_labels(img.isel(y=slice(0, 120)))],
                             size=32, stride=16)  # fmt: skip
    rows = np.random.default_rng(0).permutation(len(chips))[:80]
    got = dict(chips.read_many(rows, max_pixels=max_pixels))
    assert sorted(got) == sorted(rows.tolist())
    for i in rows:
        for a, b in zip(chips.read(int(i)), got[int(i)], strict=True):
            np.testing.assert_array_equal(a, b)
