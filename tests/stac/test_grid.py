"""The target grid and the search as small frozen objects; composites by name."""

import dataclasses

import numpy as np
import pytest
import xarray as xr

from xlandcover.errors import PresetError, StacQueryError
from xlandcover.stac import (
    COMPOSITES,
    StacPreset,
    StacSearch,
    TargetGrid,
    composite,
    register_composite,
)


def test_target_grid_is_frozen_and_gives_the_exact_transform_and_shape():
    grid = TargetGrid(32633, 10.0, (500_000.0, 5_200_000.0, 500_640.0, 5_200_320.0), 256)
    assert grid.shape == (32, 64)
    assert tuple(grid.transform)[:6] == (10.0, 0.0, 500_000.0, 0.0, -10.0, 5_200_320.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        grid.epsg = 4326  # type: ignore[misc]
    box = grid.geobox()
    assert box.shape == grid.shape and box.crs.epsg == 32633
    assert tuple(box.affine)[:6] == tuple(grid.transform)[:6]


def test_stac_search_describes_only_what_is_set():
    search = StacSearch(("sentinel-2-l2a",), bbox=(1.0, 2.0, 3.0, 4.0), max_cloud=20)
    assert search.describe() == (
        "(collections=['sentinel-2-l2a'], bbox=(1.0, 2.0, 3.0, 4.0), max_cloud=20)"
    )


def test_a_registered_composite_serves_load_stac_and_presets():
    stack = xr.DataArray(
        np.array([[[[1.0]]], [[[np.nan]]], [[[5.0]]]], dtype=np.float32),
        dims=("time", "band", "y", "x"),
    )
    register_composite("max", lambda s: s.max("time"))
    try:
        assert composite(stack, "max").item() == 5.0
        assert composite(stack, "first").item() == 1.0
        assert StacPreset("mine", "c", (), (), composite="max").composite == "max"
        with pytest.raises(StacQueryError, match="exists"):
            register_composite("median", lambda s: s)
    finally:
        COMPOSITES.pop("max")
    with pytest.raises(StacQueryError, match=r"unknown composite 'max'; use one of \['first'"):
        composite(stack, "max")
    with pytest.raises(PresetError, match="composite must be one of"):
        StacPreset("mine", "c", (), (), composite="max")
