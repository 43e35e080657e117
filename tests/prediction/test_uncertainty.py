"""Uncertainty layers, quantised probabilities and the softmax temperature in predict."""

import numpy as np
import pytest
import rasterio
import xarray as xr

import xlandcover as xlc
from xlandcover.errors import ModelPackageError
from xlandcover.model import NODATA_LABEL, with_temperature
from xlandcover.prediction import _engine, dequantize

from ..conftest import make_image
from .test_predict import reference_layers


@pytest.fixture(scope="module")
def scene(tiny_package):
    img = make_image(130, 150, seed=2).astype(np.float32)
    img.values[:, :6, :9] = np.nan  # nodata corner
    probs = xlc.predict(img, tiny_package, output="probabilities").values
    labels = xlc.predict(img, tiny_package).values
    return img, probs, labels


def test_layers_match_their_definitions_and_keep_nodata(tiny_package, scene):
    img, probs, labels = scene
    ds = xlc.predict(img, tiny_package, output=("labels", "confidence", "margin", "entropy"))
    assert isinstance(ds, xr.Dataset) and set(ds.data_vars) == {
        "landcover", "confidence", "margin", "entropy"
    }  # fmt: skip
    nodata = np.isnan(probs).any(axis=0)
    assert nodata.sum() == 6 * 9
    finite = np.nan_to_num(probs)
    for name, want in reference_layers(finite).items():
        got = ds[name].values
        assert got.dtype == np.uint8 and ds[name].rio.nodata == 255
        assert (got[nodata] == 255).all()
        np.testing.assert_array_equal(got[~nodata], want[~nodata])
        assert got[~nodata].max() <= 254
    np.testing.assert_array_equal(ds["landcover"].values, labels)
    assert ds["landcover"].attrs["class_ids"] == [1, 2, 5, 7]
    assert ds["confidence"].rio.crs == img.rio.crs
    single = xlc.predict(img, tiny_package, output="margin")
    assert isinstance(single, xr.DataArray) and single.name == "margin"
    back = dequantize(single)
    np.testing.assert_allclose(back.values[~nodata], (want := np.sort(finite, 0))[-1][~nodata]
                               - want[-2][~nodata], atol=0.5 / 254 + 1e-6)  # fmt: skip
    assert np.isnan(back.values[nodata]).all()


def test_quantised_probabilities_are_4x_smaller(tiny_package, scene, tmp_path):
    img, probs, _ = scene
    q = xlc.predict(img, tiny_package, output="probabilities", dtype="uint8")
    assert q.dims == ("class", "y", "x") and q.dtype == np.uint8
    ok = ~np.isnan(probs)
    assert np.abs(q.values[ok] / 254 - probs[ok]).max() <= 0.5 / 254 + 1e-6
    assert (q.values[~ok] == 255).all()
    f = xlc.predict(img, tiny_package, output="probabilities")
    assert f.nbytes == 4 * q.nbytes

    def size(path):
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())

    small = xlc.to_zarr(q, tmp_path / "q.zarr")
    big = xlc.to_zarr(f, tmp_path / "f.zarr")
    assert size(big) > 2.5 * size(small)
    cog = xlc.to_cog(q, tmp_path / "q.tif")
    with rasterio.open(cog) as src:
        assert src.dtypes == ("uint8",) * 4 and src.nodata == 255
        assert src.descriptions == ("water", "forest", "built", "bare")


def test_a_dataset_of_layers_is_written_in_one_model_run(tiny_package, tmp_path, monkeypatch):
    img = make_image(200, 210, seed=4).chunk({"y": 100, "x": 105})
    calls = []
    forward = _engine.forward

    def counting(loaded, tiles, *args):
        calls.append(len(tiles))
        return forward(loaded, tiles, *args)

    monkeypatch.setattr(_engine, "forward", counting)
    xlc.to_zarr(xlc.predict(img, tiny_package, chunks=None), tmp_path / "labels.zarr")
    once = sum(calls)
    calls.clear()
    ds = xlc.predict(img, tiny_package, output=("labels", "confidence"), chunks=None)
    xlc.to_zarr(ds, tmp_path / "both.zarr")
    assert sum(calls) == once
    back = xr.open_zarr(tmp_path / "both.zarr", decode_coords="all", consolidated=False)
    assert set(back.data_vars) == {"landcover", "confidence"}
    assert back["confidence"].rio.crs == img.rio.crs and back["confidence"].attrs["nodata"] == 255
    calls.clear()
    paths = xlc.to_cog(ds, tmp_path / "zion-{name}.tif")
    assert sum(calls) == once
    assert sorted(p.name for p in paths.values()) == ["zion-confidence.tif", "zion-landcover.tif"]
    with rasterio.open(paths["landcover"]) as src:
        assert src.colormap(1)[1][:3] == (31, 120, 180)  # the class colour table
        np.testing.assert_array_equal(src.read(1), ds["landcover"].values)
    with rasterio.open(paths["confidence"]) as src:
        np.testing.assert_array_equal(src.read(1), ds["confidence"].values)
    assert xlc.to_cog(ds, tmp_path / "m.tif", overwrite=True)["landcover"].name == "m-landcover.tif"


def test_temperature_from_the_package_and_old_packages(tiny_package, scene):
    img, probs, _ = scene
    assert tiny_package.metadata.temperature == 1.0  # no calibration stored: unchanged
    from importlib.resources import files

    old = xlc.load_model(files("xlandcover") / "data" / "demo-dubai.xlc")  # before calibration
    assert old.metadata.temperature == 1.0
    zion = xlc.load_model(files("xlandcover") / "data" / "demo-zion.xlc")  # trained by the recipe
    fitted = zion.metadata.extra["calibration"]["temperature"]
    assert zion.metadata.temperature == pytest.approx(fitted) and fitted != 1.0
    hot = with_temperature(tiny_package, 4.0, ece_before=0.2)
    assert hot.metadata.temperature == 4.0 and hot.sha256 != tiny_package.sha256
    assert hot.metadata.extra["calibration"] == {"temperature": 4.0, "ece_before": 0.2}
    soft = xlc.predict(img, hot, output="probabilities").values
    ok = ~np.isnan(probs)
    assert np.nanmean(soft.max(0)) < np.nanmean(probs.max(0)) - 0.05  # flatter
    np.testing.assert_allclose(np.nansum(soft, 0)[ok[0]], 1.0, atol=1e-5)
    override = xlc.predict(img, tiny_package, output="probabilities", temperature=4.0).values
    np.testing.assert_allclose(override, soft, atol=1e-6)
    back = xlc.predict(img, hot, output="probabilities", temperature=1.0).values
    np.testing.assert_allclose(back, probs, atol=1e-6)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        xlc.predict(img, tiny_package, temperature=0.0)
    with pytest.raises(ModelPackageError, match="temperature must be a positive number"):
        with_temperature(tiny_package, -1.0)


def test_saved_temperature_round_trips(tmp_path):
    from ..conftest import tiny_net

    pkg = xlc.save_model(tiny_net(), tmp_path / "t.xlc", bands=["red", "green", "blue"],
                         classes=[{"id": i, "name": f"c{i}"} for i in range(4)], window=64,
                         temperature=1.7)  # fmt: skip
    assert xlc.load_model(tmp_path / "t.xlc").metadata.temperature == pytest.approx(1.7)
    assert pkg.metadata.extra == {"calibration": {"temperature": 1.7}}


def test_bad_outputs(tiny_package):
    img = make_image(64, 64)
    with pytest.raises(ValueError, match="output must be one of"):
        xlc.predict(img, tiny_package, output=("labels", "scores"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dtype must be"):
        xlc.predict(img, tiny_package, output="probabilities", dtype="float16")  # type: ignore
    labels = xlc.predict(img, tiny_package, output="labels", dtype="uint8")  # no-op for labels
    assert labels.dtype == np.uint8 and (labels.values != NODATA_LABEL).all()
