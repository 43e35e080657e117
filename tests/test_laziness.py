"""Lazy by default: building results computes nothing until asked, for every lazy function
(one helper, ``raise_if_dask_computes``, as in xarray's test suite)."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

import xlandcover as xlc
from xlandcover.evaluation import confusion_matrix
from xlandcover.model import clear_cache

from .conftest import ZION, make_image, raise_if_dask_computes


def test_the_helper_fails_when_something_computes():
    with pytest.raises(AssertionError, match="computed"), raise_if_dask_computes():
        da.ones(4, chunks=2).sum().compute()


def test_open_raster_reads_nothing():
    with raise_if_dask_computes():
        img = xlc.open_raster(ZION / "landsat8_b2345_stack.tif", chunks=128)
    assert isinstance(img.data, da.Array) and img.sizes["band"] == 4


@pytest.mark.parametrize(
    "output", ["labels", "probabilities", "confidence", ("labels", "entropy", "margin")]
)
def test_predict_builds_its_graph_without_computing(tiny_package, output):
    img = make_image(300, 300).chunk({"y": 128, "x": 128})
    clear_cache()  # nor does it build the model (that happens on the workers)
    with raise_if_dask_computes():
        out = xlc.predict(img, tiny_package, output=output, chunks=None)
        accessor = img.landcover.predict(tiny_package, output=output, chunks=None)
    layers = out.data_vars.values() if hasattr(out, "data_vars") else [out]
    assert all(isinstance(layer.data, da.Array) for layer in layers)
    assert type(out) is type(accessor)


def test_sieve_builds_its_graph_without_computing():
    labels = (make_image(200, 150, bands=("red",))[0] % 4).chunk({"y": 64, "x": 50})
    with raise_if_dask_computes():
        sieved = labels.landcover.sieve(5)
    assert sieved.chunks == labels.chunks


def test_confusion_matrix_of_dask_arrays_is_lazy():
    truth = da.from_array(np.arange(100, dtype=np.uint8).reshape(10, 10) % 3, chunks=5)
    pred = da.from_array(np.arange(100, dtype=np.uint8).reshape(10, 10) % 2, chunks=5)
    with raise_if_dask_computes():
        cm = confusion_matrix(truth=truth, pred=pred, class_ids=[0, 1, 2])
    assert isinstance(cm, da.Array)
    assert int(cm.sum().compute()) == 100
