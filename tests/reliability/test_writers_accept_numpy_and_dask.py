"""Promise: every writer takes predictions as they come, numpy-backed (after ``.compute()`` in
a notebook) or Dask-backed, and writes the same pixels."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import xarray as xr
from distributed import Client

import xlandcover as xlc
from xlandcover.resume import write_zarr_resumable

from ..conftest import make_image
from .helpers import labels, probabilities


@pytest.fixture(params=["numpy", "dask"])
def chunk(request):
    return None if request.param == "numpy" else 128


@pytest.mark.parametrize("make", [labels, probabilities])
def test_to_cog_writes_numpy_and_dask_backed_predictions(tmp_path, chunk, make):
    data = make(chunk=chunk)
    data.landcover.to_cog(tmp_path / "map.tif")
    with rasterio.open(tmp_path / "map.tif") as src:
        back = src.read() if data.ndim == 3 else src.read(1)
    np.testing.assert_array_equal(back, data.values)


@pytest.mark.parametrize("make", [labels, probabilities])
def test_to_zarr_writes_numpy_and_dask_backed_predictions(tmp_path, chunk, make):
    data = make(chunk=chunk)
    data.landcover.to_zarr(tmp_path / "map.zarr")
    back = xr.open_zarr(tmp_path / "map.zarr", consolidated=False)[data.name]
    np.testing.assert_array_equal(back.values, data.values)


def test_resumable_zarr_writes_numpy_and_dask_backed_predictions(tmp_path, chunk):
    data = labels(chunk=chunk)
    with Client(processes=False, n_workers=1, threads_per_worker=2) as client:
        write_zarr_resumable(data, tmp_path / "map.zarr", client=client, progress=False)
    back = xr.open_zarr(tmp_path / "map.zarr", consolidated=False)["landcover"]
    np.testing.assert_array_equal(back.values, data.values)


def test_computed_labels_of_a_real_prediction_write_to_a_cog(tmp_path, tiny_package):
    labels_ = xlc.predict(make_image(150, 170), tiny_package).compute()  # as in a notebook
    assert isinstance(labels_.data, np.ndarray)
    labels_.landcover.to_cog(tmp_path / "map.tif")
    with rasterio.open(tmp_path / "map.tif") as src:
        np.testing.assert_array_equal(src.read(1), labels_.values)
        assert src.tags(1)["CLASS_5"] == "built"
