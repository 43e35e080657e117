"""Label rasters: the class lookup, the label-raster check and the same-grid check."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from xlandcover.errors import LabelAlignmentError, RasterInputError, UnknownClassError
from xlandcover.io import as_label_raster
from xlandcover.io._labels import ClassIndex, check_same_grid

from ..conftest import make_image


def test_class_index_maps_ids_ignored_values_and_unknown_ones():
    index = ClassIndex([7, 1, 5], ignore_values=[255, 0])
    values = np.array([[1, 5, 7], [0, 255, 3]], dtype=np.uint8)
    np.testing.assert_array_equal(index(values), [[1, 2, 0], [3, 3, 4]])
    assert index.n == 3 and index.unknown == 4 and index.ignore_values == (0, 255)
    with pytest.raises(UnknownClassError, match="duplicates"):
        ClassIndex([1, 1])


@given(
    ids=st.lists(st.integers(-300, 70_000), min_size=1, max_size=8, unique=True),
    values=st.lists(st.integers(-300, 70_000), min_size=1, max_size=50),
    dtype=st.sampled_from(["int64", "int32"]),
)
def test_class_index_table_and_search_agree(ids, values, dtype):
    """Short value ranges go through a table, wide ones through binary search: same result."""
    index = ClassIndex(ids, ignore_values=[ids[0] + 1])
    v = np.asarray(values, dtype=dtype)
    expected = [
        ids.index(x) if x in ids else (len(ids) if x == ids[0] + 1 else len(ids) + 1)
        for x in values
    ]
    np.testing.assert_array_equal(index(v), expected)
    spread = np.concatenate([v, [np.iinfo(dtype).max]]).astype(dtype)  # forces the search
    np.testing.assert_array_equal(index(spread)[:-1], expected)


def test_class_index_of_small_integer_types_uses_the_whole_type_range():
    index = ClassIndex([2, 200])
    for dtype in ("uint8", "int8", "uint16", "int16", "bool"):
        v = np.array([0, 1, 2, 100], dtype=dtype) if dtype != "bool" else np.array([0, 1])
        out = index(v)
        assert out.dtype == np.int64 and out.shape == v.shape
    np.testing.assert_array_equal(index(np.array([2, 200, 3], np.uint8)), [0, 1, 3])


def test_as_label_raster_takes_one_band_of_integers_only():
    img = make_image(8, 8)
    one = img.isel(band=[0])
    assert as_label_raster(one).dims == ("y", "x")
    with pytest.raises(RasterInputError, match=r"one band of class ids.*isel\(band=0\)"):
        as_label_raster(img)
    with pytest.raises(RasterInputError, match="integer class ids, not float32"):
        as_label_raster(one.astype("float32"))
    with pytest.raises(RasterInputError, match=r"must be an xarray\.DataArray"):
        as_label_raster(one.values)


def test_check_same_grid_names_what_differs_and_the_fix():
    img = make_image(16, 16)
    lab = img.isel(band=0)
    check_same_grid(lab, img)
    with pytest.raises(LabelAlignmentError, match=r"has shape \(15, 16\).*reproject_match"):
        check_same_grid(lab[:-1], img)
    with pytest.raises(LabelAlignmentError, match="is in CRS EPSG:32613"):
        check_same_grid(lab.rio.write_crs("EPSG:32613"), img)
    with pytest.raises(LabelAlignmentError, match="not on the pixel grid of the image"):
        check_same_grid(lab.assign_coords(x=lab.x + 5.0), img)
    plain = img.drop_vars("spatial_ref")
    check_same_grid(plain.isel(band=0), plain)  # a plain pixel grid: only the shape counts
