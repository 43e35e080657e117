import contextlib
import os
import threading
import time

import dask
import dask.array as da
import numpy as np
import pytest
import rasterio
import xarray as xr
from rio_cogeo.cogeo import cog_validate

import xlandcover as xlc
from xlandcover.errors import AllNodataError, OutputExistsError
from xlandcover.output._write import _settled_threads

from ..conftest import make_image
from ..reliability.helpers import COLORS, IDS, NAMES
from ..reliability.helpers import labels as blocky_labels


def synthetic_labels(height: int, width: int, chunk: int = 512) -> xr.DataArray:
    """Blocky labels with a nodata corner, Dask-backed, as predict returns them."""
    return blocky_labels(height, width, chunk=chunk)


def test_zarr_round_trip_keeps_values_crs_and_classes(tmp_path):
    labels = synthetic_labels(700, 900, chunk=256)
    out = labels.landcover.to_zarr(tmp_path / "lc.zarr")
    ds = xr.open_zarr(out, decode_coords="all", consolidated=False)
    back = ds["landcover"]
    assert back.dtype == np.uint8 and back.chunks == ((256, 256, 188), (256, 256, 256, 132))
    np.testing.assert_array_equal(back.values, labels.values)
    assert back.rio.crs == labels.rio.crs
    assert back.rio.transform() == labels.rio.transform()
    assert back.rio.nodata == 255
    assert back.attrs["class_names"] == NAMES and back.attrs["class_colors"] == COLORS
    import zarr

    assert zarr.open_group(out, mode="r").metadata.zarr_format == 3


def test_zarr_of_a_real_prediction_with_irregular_chunks(tmp_path, tiny_package):
    img = make_image(200, 230).chunk({"y": 100, "x": 70})  # remainder chunks get merged
    labels = xlc.predict(img, tiny_package)
    xlc.to_zarr(labels, tmp_path / "p.zarr")
    back = xr.open_zarr(tmp_path / "p.zarr", consolidated=False)["landcover"]
    np.testing.assert_array_equal(back.values, labels.values)
    probs = xlc.predict(img, tiny_package, output="probabilities")
    xlc.to_zarr(probs, tmp_path / "probs.zarr")
    back = xr.open_zarr(tmp_path / "probs.zarr", consolidated=False)["probability"]
    np.testing.assert_allclose(back.values, probs.values)


def test_cog_is_valid_with_crs_colours_names_and_mode_overviews(tmp_path):
    labels = synthetic_labels(1500, 1300)
    path = labels.landcover.to_cog(tmp_path / "lc.tif")
    valid, errors, _ = cog_validate(path)
    assert valid, errors
    with rasterio.open(path) as src:
        assert src.crs == labels.rio.crs and src.transform == labels.rio.transform()
        assert src.nodata == 255 and src.dtypes == ("uint8",)
        assert src.block_shapes == [(512, 512)]
        np.testing.assert_array_equal(src.read(1), labels.values)
        cmap = src.colormap(1)
        assert cmap[1] == (0x1F, 0x78, 0xB4, 255) and cmap[7] == (0xB3, 0xAE, 0xA3, 255)
        assert src.tags(1)["CLASS_5"] == "built"
        assert src.overviews(1) == [2, 4]
        ovr = src.read(1, out_shape=(750, 650))
        assert set(np.unique(ovr)) <= {*IDS, 255}  # mode/nearest: no invented class ids
    aux = (tmp_path / "lc.tif.aux.xml").read_text()
    assert "<Category>built</Category>" in aux
    assert aux.count("<Category>") == 8


def test_cog_overviews_use_the_mode(tmp_path):
    # 2x2 blocks holding three 1s and one 5: mode gives 1; nearest would give 5 at (0, 0)
    values = np.ones((1024, 1024), np.uint8)
    values[::2, ::2] = 5
    img = make_image(1024, 1024)
    labels = (
        xr.DataArray(
            da.from_array(values, chunks=512),
            dims=("y", "x"),
            coords={"y": img.y, "x": img.x},
            attrs={"class_ids": IDS, "class_names": NAMES, "class_colors": COLORS},
        )
        .rio.write_crs(img.rio.crs)
        .rio.write_nodata(255, encoded=False)
    )
    xlc.to_cog(labels, tmp_path / "m.tif")
    with rasterio.open(tmp_path / "m.tif") as src:
        assert src.overviews(1) == [2]
        ovr = src.read(1, out_shape=(512, 512))
    assert (ovr == 1).mean() > 0.99


def test_existing_outputs_are_not_overwritten(tmp_path):
    labels = synthetic_labels(100, 100)
    xlc.to_cog(labels, tmp_path / "a.tif")
    xlc.to_zarr(labels, tmp_path / "a.zarr")
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        xlc.to_cog(labels, tmp_path / "a.tif")
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        xlc.to_zarr(labels, tmp_path / "a.zarr")
    changed = labels.where(labels != 1, 2).astype(np.uint8)
    changed.attrs = labels.attrs
    xlc.to_cog(changed, tmp_path / "a.tif", overwrite=True)
    xlc.to_zarr(changed, tmp_path / "a.zarr", overwrite=True)
    with rasterio.open(tmp_path / "a.tif") as src:
        assert 1 not in np.unique(src.read(1))
    back = xr.open_zarr(tmp_path / "a.zarr", consolidated=False)["landcover"].values
    assert 1 not in np.unique(back)


def _failing(labels: xr.DataArray) -> xr.DataArray:
    def boom(block, block_info=None):
        if block_info[0]["chunk-location"] == (1, 1):
            raise OSError("unreadable input chunk")
        return block

    return labels.copy(data=labels.data.map_blocks(boom, dtype=np.uint8))


@pytest.mark.parametrize("writer", ["to_cog", "to_zarr"])
def test_a_crash_leaves_nothing_that_looks_complete(tmp_path, writer):
    labels = _failing(synthetic_labels(1100, 1100))
    target = tmp_path / ("out.tif" if writer == "to_cog" else "out.zarr")
    with pytest.raises(OSError, match="unreadable input chunk"):
        getattr(xlc, writer)(labels, target)
    assert os.listdir(tmp_path) == []  # neither the target nor a temporary is left


def _one_fails_while_one_writes(finished: list[int]) -> tuple:
    started = threading.Event()

    def slow(x):
        started.set()
        time.sleep(0.5)
        finished.append(x)
        return x

    def boom(x):
        started.wait(5)  # fail while the other task is still on its way to the writer
        raise OSError("unreadable input chunk")

    return dask.delayed(slow)(1), dask.delayed(boom)(2)


@pytest.mark.parametrize("settled", [False, True])
def test_a_failing_write_waits_for_the_chunks_in_flight(settled):
    # Dask's threaded scheduler raises the first failure at once while other threads still
    # write; cleaning up under them closed a GDAL dataset mid-write (a segfault in CI) or
    # left files behind. The writers wait for their threads first.
    finished: list[int] = []
    tasks = _one_fails_while_one_writes(finished)
    settle = _settled_threads(*tasks) if settled else contextlib.nullcontext()
    with dask.config.set(num_workers=2), pytest.raises(OSError, match="unreadable"), settle:
        dask.compute(*tasks)
    assert finished == ([1] if settled else [])  # without: still running at the raise
    time.sleep(0.6)


@pytest.mark.parametrize("writer", ["to_cog", "to_zarr"])
def test_all_nodata_prediction_is_an_error_and_writes_nothing(tmp_path, writer, tiny_package):
    img = make_image(128, 64).chunk({"y": 64}).rio.write_nodata(0)
    img = img.copy(data=img.data * 0)
    labels = xlc.predict(img, tiny_package)  # lazy: a Dask input is not scanned up front
    with pytest.raises(AllNodataError, match="every pixel"):
        getattr(xlc, writer)(labels, tmp_path / "x.out")
    assert os.listdir(tmp_path) == []
