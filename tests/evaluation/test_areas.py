"""Class areas (projected and geodesic, out of core) and the quick-look plots."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import xarray as xr

import xlandcover as xlc
from xlandcover.evaluation import class_areas

from ..conftest import ZION


def label_map(values, crs="EPSG:32612", res=30.0, chunks=None):
    h, w = values.shape
    da = xr.DataArray(
        values.astype(np.uint8),
        dims=("y", "x"),
        coords={
            "y": 4_100_000.0 - res * (np.arange(h) + 0.5),
            "x": 300_000.0 + res * (np.arange(w) + 0.5),
        },
        attrs={
            "class_ids": [1, 2],
            "class_names": ["water", "forest"],
            "class_colors": ["#0000ff", "#00ff00"],
        },
    )
    da = da.rio.write_crs(crs) if crs else da
    return da.chunk(chunks) if chunks else da


def test_projected_areas_are_counts_times_pixel_area_whatever_the_chunking():
    rng = np.random.default_rng(0)
    values = rng.choice(np.array([1, 2, 255]), size=(90, 70))
    want = [(values == 1).sum(), (values == 2).sum()]
    for chunks in (None, 17, 64):
        t = label_map(values, chunks=chunks).landcover.class_areas()
        assert t.index.tolist() == ["water", "forest"]
        np.testing.assert_array_equal(t["pixels"], want)
        np.testing.assert_allclose(t["hectares"], np.array(want) * 900 / 1e4)
        np.testing.assert_allclose(t["share"].sum(), 1.0)  # nodata (255) left out


def test_pixel_grid_map_has_no_area_columns():
    t = class_areas(label_map(np.ones((8, 8)), crs=None))
    assert "hectares" not in t and t["pixels"].tolist() == [64, 0]


def test_geodesic_areas_match_the_projected_ones_on_a_real_map():
    nlcd = xlc.open_raster(ZION / "nlcd_generalized_on_landsat_grid.tif", chunks=512)[0]
    ids = list(range(1, 9))
    utm = class_areas(nlcd, class_ids=ids)
    geographic = nlcd.rio.reproject("EPSG:4326", nodata=0).chunk(300)
    assert geographic.rio.crs.is_geographic
    geo = class_areas(geographic, class_ids=ids)
    big = utm["share"] > 0.05
    np.testing.assert_allclose(geo["km2"][big], utm["km2"][big], rtol=0.01)
    assert utm["km2"].sum() == pytest.approx(
        nlcd.size * 900 / 1e6 * (1 - (nlcd.values == 0).mean())
    )


def test_plot_labels_uses_class_colours_and_names():
    values = np.ones((40, 60))
    values[:, 30:] = 2
    ax = label_map(values).landcover.plot_labels()
    shown = ax.get_images()[0].get_array()
    assert tuple(shown[5, 5]) == (0, 0, 255, 255) and tuple(shown[5, 50]) == (0, 255, 0, 255)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["water", "forest"]


def test_plot_rgb_stretches_named_bands_into_unit_range():
    img = xlc.open_raster(ZION / "landsat8_b2345_stack.tif", bands=["blue", "green", "red", "nir"])
    ax = img.landcover.plot_rgb(max_pixels=50_000)
    rgb = ax.get_images()[0].get_array()
    assert rgb.shape[-1] == 3 and rgb.min() >= 0.0 and rgb.max() <= 1.0
    assert rgb.shape[0] * rgb.shape[1] <= 50_000
