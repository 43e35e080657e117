"""Stratified random samples drawn out of core: chunk independence, design, files."""

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import xlandcover as xlc
from xlandcover.errors import (
    LabelAlignmentError,
    MissingDependencyError,
    OutputExistsError,
    SampleDesignError,
)
from xlandcover.evaluation import allocate
from xlandcover.evaluation._sampling import pixel_keys

from ..conftest import make_image


def blocky_map(height: int, width: int, *, chunk: int | None = None, seed: int = 0, crs=True):
    """Classes 1-4 in blocks of unequal size, a nodata corner, 10 m UTM grid."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    values = np.where(xx < width // 2, 1, 2).astype(np.uint8)
    values[yy > height * 0.7] = 3
    values[(yy // 7 + xx // 5) % 11 == 0] = 4
    values[rng.random(values.shape) < 0.05] = 4
    values[:3, :4] = 255
    img = make_image(height, width, crs="EPSG:32612" if crs else None)
    data = values if chunk is None else da.from_array(values, chunks=chunk)
    labels = xr.DataArray(data, dims=("y", "x"), coords={"y": img.y, "x": img.x}, name="lc")
    if crs:
        labels = labels.rio.write_crs(img.rio.crs).rio.write_transform(img.rio.transform())
    return labels.rio.write_nodata(255, encoded=False)


def drawn(sample) -> pd.DataFrame:
    return pd.DataFrame(sample.drop(columns="geometry"))


@settings(max_examples=30, deadline=None)
@given(
    height=st.integers(12, 70),
    width=st.integers(12, 70),
    chunk_y=st.integers(3, 80),
    chunk_x=st.integers(3, 80),
    n=st.integers(8, 60),
    allocation=st.sampled_from(["proportional", "equal"]),
    seed=st.integers(0, 2**64 - 1),
)
def test_the_same_seed_gives_the_same_sample_for_any_chunking(
    height, width, chunk_y, chunk_x, n, allocation, seed
):
    whole = blocky_map(height, width)
    chunked = whole.chunk({"y": chunk_y, "x": chunk_x})
    kw = {"n": n, "allocation": allocation, "min_per_stratum": 2, "seed": seed}
    a = xlc.sample_design(whole, **kw)
    b = xlc.sample_design(chunked, **kw)
    pd.testing.assert_frame_equal(drawn(a), drawn(b))
    assert a.geometry.equals(b.geometry)
    values = whole.values
    assert (values[a["row"], a["col"]] == a["map"]).all()  # points are on their pixels
    assert not (values[a["row"], a["col"]] == 255).any()
    assert not a.duplicated(["row", "col"]).any()  # without replacement


def test_inclusion_probabilities_and_stratum_sizes():
    labels = blocky_map(90, 120, chunk=40)
    sample = xlc.sample_design(labels, n=100, min_per_stratum=10, seed=5)
    values = labels.values
    sizes = {k: int((values == k).sum()) for k in (1, 2, 3, 4)}
    by = sample.groupby("stratum")
    # Horvitz-Thompson: the 1/pi of a stratum's units add up to its size N_h
    np.testing.assert_allclose(by["inclusion_probability"].apply(lambda p: (1 / p).sum()),
                               [sizes[k] for k in sorted(sizes)])  # fmt: skip
    assert by["stratum_pixels"].first().to_dict() == sizes
    assert by.size().sum() == 100 and by.size().min() >= 10
    assert sample["pixel_area"].eq(100.0).all()
    assert by["stratum_area"].first().to_dict() == {k: 100.0 * v for k, v in sizes.items()}
    design = sample.attrs["sampling_design"]
    assert design["units_per_stratum"] == by.size().to_dict()
    assert design["map_pixels"] == sizes
    assert sample["unit"].tolist() == list(range(100)) and sample["reference"].isna().all()
    assert sample.crs.to_epsg() == 32612
    assert sample["lon"].between(-114, -110).all() and sample["lat"].between(36, 38).all()


def test_draws_are_simple_random_samples_within_strata():
    # every pixel of a stratum is drawn with probability n_h / N_h
    values = np.ones((6, 10), np.uint8)
    values[:, 7:] = 2  # N = 42 and 18 pixels
    labels = xr.DataArray(values, dims=("y", "x")).rio.write_nodata(255, encoded=False)
    labels.attrs["pixel_grid"] = 1
    hits = np.zeros(values.shape)
    draws = 600
    for seed in range(draws):
        s = xlc.sample_design(labels, allocation={1: 6, 2: 3}, seed=seed)
        np.add.at(hits, (s["row"], s["col"]), 1)
    for k, pi in ((1, 6 / 42), (2, 3 / 18)):
        freq = hits[values == k] / draws
        se = np.sqrt(pi * (1 - pi) / draws)
        assert np.abs(freq - pi).max() < 4.5 * se
        assert abs(freq.mean() - pi) < 1e-12  # n_h units every time


def test_seeds_and_strata_rasters():
    labels = blocky_map(50, 60)
    a = xlc.sample_design(labels, n=30, min_per_stratum=2, seed=1)
    b = xlc.sample_design(labels, n=30, min_per_stratum=2, seed=2)
    assert set(zip(a.row, a.col, strict=True)) != set(zip(b.row, b.col, strict=True))
    # stratify by another raster (an older map): the map class is still recorded
    old = xr.where(labels == 4, 1, labels).astype(np.uint8).rio.write_nodata(255, encoded=False)
    old = old.rio.write_crs(labels.rio.crs)
    s = xlc.sample_design(labels, strata=old, n=30, allocation="equal", seed=3)
    assert set(s["stratum"]) == {1, 2, 3} and 4 in set(s["map"])
    assert (old.values[s["row"], s["col"]] == s["stratum"]).all()
    with pytest.raises(LabelAlignmentError, match="pixel grid of the map"):
        xlc.sample_design(labels, strata=old[:-1], n=30)


def test_geographic_maps_get_geodesic_pixel_areas():
    labels = blocky_map(40, 40, chunk=16)
    geo = labels.assign_coords(y=np.linspace(60.0, 59.0, 40), x=np.linspace(10.0, 11.0, 40))
    geo = geo.rio.write_crs("EPSG:4326").rio.write_transform(None)
    geo = geo.rio.write_transform(geo.rio.transform(recalc=True))
    s = xlc.sample_design(geo, n=40, min_per_stratum=4, seed=0)
    hectares = geo.landcover.class_areas()["hectares"]
    got = s.groupby("stratum")["stratum_area"].first() / 1e4
    np.testing.assert_allclose(got.to_numpy(), hectares.to_numpy(), rtol=1e-9)
    north, south = s.loc[s["row"].idxmin(), "pixel_area"], s.loc[s["row"].idxmax(), "pixel_area"]
    assert north < south  # pixels shrink towards the pole
    assert (s["lon"] == s["x"]).all()


def test_allocations():
    sizes = {1: 200_000, 2: 150_000, 3: 3_200_000, 4: 6_450_000}
    assert allocate(sizes, 640) == {1: 13, 2: 9, 3: 205, 4: 413}
    assert allocate(sizes, 640, min_per_stratum=75) == {1: 75, 2: 75, 3: 162, 4: 328}
    assert allocate(sizes, 10, allocation="equal") == {1: 3, 2: 3, 3: 2, 4: 2}
    assert sum(allocate(sizes, 10, min_per_stratum=5).values()) == 20  # 4 strata x 5
    neyman = allocate(
        sizes, 641, allocation="neyman", users_accuracy={1: 0.7, 2: 0.6, 3: 0.9, 4: 0.95}
    )
    w = np.array([0.02 * 0.458258, 0.015 * 0.489898, 0.32 * 0.3, 0.645 * 0.217945])
    np.testing.assert_allclose(list(neyman.values()), 641 * w / w.sum(), atol=0.5)
    assert allocate({1: 5, 2: 10_000}, 100, min_per_stratum=20) == {1: 5, 2: 95}  # census
    assert allocate(sizes, allocation={1: 100, 4: 50}) == {1: 100, 2: 0, 3: 0, 4: 50}
    with pytest.raises(SampleDesignError, match="more units than pixels"):
        allocate({1: 5, 2: 10}, allocation={1: 6})
    with pytest.raises(SampleDesignError, match="needs the anticipated user's accuracy"):
        allocate(sizes, 100, allocation="neyman")
    with pytest.raises(SampleDesignError, match="users_accuracy is missing for strata"):
        allocate(sizes, 100, allocation="neyman", users_accuracy={1: 0.9})


def test_olofsson_sample_size_eq_13():
    sizes = {1: 200_000, 2: 150_000, 3: 3_200_000, 4: 6_450_000}
    assert xlc.sample_size(sizes, {1: 0.7, 2: 0.6, 3: 0.9, 4: 0.95}, target_se=0.01) == 641
    assert xlc.sample_size(sizes, 0.9, target_se=0.02) == 225  # (0.3 / 0.02)^2


def test_design_errors():
    labels = blocky_map(40, 50)
    with pytest.raises(SampleDesignError, match=r"strata .*1 .* get fewer than 2 sample units"):
        xlc.sample_design(labels, n=4, allocation={1: 1, 2: 3})
    with pytest.raises(SampleDesignError, match="n must be a positive"):
        xlc.sample_design(labels)
    with pytest.raises(SampleDesignError, match="seed must be an integer"):
        xlc.sample_design(labels, n=10, seed=-1)
    empty = xr.full_like(labels, 255).rio.write_nodata(255, encoded=False)
    with pytest.raises(SampleDesignError, match="no pixel outside nodata"):
        xlc.sample_design(empty, n=10)


def test_pixel_keys_are_pure_functions_of_position():
    full = pixel_keys(7, np.arange(0, 50), np.arange(0, 40))
    part = pixel_keys(7, np.arange(20, 30), np.arange(5, 40))
    np.testing.assert_array_equal(full[20:30, 5:40], part)
    assert len(np.unique(full)) == full.size
    u = full.ravel() / 2.0**64  # roughly uniform on [0, 1)
    assert abs(u.mean() - 0.5) < 0.02 and abs(np.mean(u < 0.1) - 0.1) < 0.02
    assert not np.array_equal(full, pixel_keys(8, np.arange(0, 50), np.arange(0, 40)))


@pytest.mark.parametrize("suffix", [".gpkg", ".geojson", ".csv"])
def test_write_and_read_samples(tmp_path, suffix):
    labels = blocky_map(40, 50, chunk=20)
    sample = xlc.sample_design(labels, n=20, allocation="equal", seed=0)
    path = xlc.write_sample(sample, tmp_path / f"sample{suffix}")
    back = xlc.read_sample(path)
    assert len(back) == 20 and back["row"].tolist() == sample["row"].tolist()
    np.testing.assert_allclose(back["inclusion_probability"], sample["inclusion_probability"])
    if suffix != ".csv":
        assert back.crs.to_epsg() == 32612
        np.testing.assert_allclose(back.geometry.x, sample["x"])
    with pytest.raises(OutputExistsError):
        xlc.write_sample(sample, path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no partial files left
    with pytest.raises(SampleDesignError, match=r"use \.gpkg, \.geojson or \.csv"):
        xlc.write_sample(sample, tmp_path / "sample.shp")


def test_missing_geopandas_names_the_install_command(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "geopandas", None)  # import geopandas -> ImportError
    with pytest.raises(MissingDependencyError, match=r"needs geopandas.*'xlandcover\[report\]'"):
        xlc.sample_design(blocky_map(20, 20), n=10)
