"""Promises about results: an input xlandcover cannot read correctly, or a model package that
does not fit together, is refused or flagged; it never yields a map that looks right."""

from __future__ import annotations

import socket
import warnings

import numpy as np
import pytest
import rasterio
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS

import xlandcover as xlc
from xlandcover.errors import BandMismatchError, InputRangeWarning, ModelPackageError
from xlandcover.model import NODATA_LABEL

from ..conftest import make_image, tiny_net
from .helpers import edited_package

# --- bands ------------------------------------------------------------------------------------


def _write(img, path, *, descriptions=None, **profile):
    img.rio.to_raster(path, **profile)
    if descriptions is not None:
        with rasterio.open(path, "r+") as dst:
            for i, d in enumerate(descriptions, start=1):
                dst.set_band_description(i, d)
    return path


def test_partial_band_descriptions_keep_the_names_that_exist(tmp_path, tiny_package):
    img = make_image(128, 160).astype(np.uint16)  # 4 x uint8 would make GDAL call band 4 alpha
    # a fourth band first, so that matching by position would feed the model the wrong bands
    four = xlc.open_raster(
        _write(
            img.isel(band=[2, 0, 1, 2]).copy(),
            tmp_path / "four.tif",
            descriptions=["", "red", "green", "blue"],
        ),
        chunks=64,
    )
    assert list(four.band.values) == ["1", "red", "green", "blue"]
    got = xlc.predict(four, tiny_package).values
    np.testing.assert_array_equal(got, xlc.predict(img, tiny_package).values)


def test_duplicate_band_descriptions_are_refused_not_guessed(tmp_path, tiny_package):
    img = make_image(64, 64).astype(np.uint16)
    path = _write(img.copy(), tmp_path / "dup.tif", descriptions=["red", "red", "blue"])
    opened = xlc.open_raster(path)
    assert list(opened.band.values) == ["red", "red", "blue"]
    with pytest.raises(BandMismatchError, match=r"missing \['green'\]"):
        xlc.predict(opened, tiny_package)
    three = _write(
        img.isel(band=[0, 0, 1, 2]).copy(),
        tmp_path / "dup4.tif",
        descriptions=["red", "red", "green", "blue"],
    )
    with pytest.raises(BandMismatchError, match=r"several bands named \['red'\]"):
        xlc.predict(xlc.open_raster(three), tiny_package)


def test_predict_refuses_to_match_a_named_model_by_position_unless_told(tmp_path, tiny_package):
    img = make_image(96, 96)
    unnamed = xlc.open_raster(_write(img.copy(), tmp_path / "plain.tif"))
    assert unnamed.band.dtype.kind in "iu"
    with pytest.raises(BandMismatchError, match="match_bands='position'"):
        xlc.predict(unnamed, tiny_package)
    by_position = xlc.predict(unnamed, tiny_package, match_bands="position").values
    np.testing.assert_array_equal(by_position, xlc.predict(img, tiny_package).values)


def test_a_model_trained_on_unnamed_bands_still_takes_them_in_order(tmp_path):
    pkg = xlc.save_model(
        tiny_net(),
        tmp_path / "m.xlc",
        bands=["band_1", "band_2", "band_3"],  # what train() names bands that had no names
        classes=[{"id": i, "name": str(i)} for i in range(4)],
        window=64,
    )
    unnamed = make_image(64, 64).assign_coords(band=[1, 2, 3])
    assert xlc.predict(unnamed, pkg).shape == (64, 64)


# --- masks ------------------------------------------------------------------------------------


def _masked_scene(path, *, alpha: bool):
    """A 128 x 128 RGB scene whose square [32:64, 40:80] is masked (internal mask or alpha)."""
    img = make_image(128, 128)
    mask = np.full((128, 128), 255, np.uint8)
    mask[32:64, 40:80] = 0
    profile = {
        "driver": "GTiff",
        "height": 128,
        "width": 128,
        "count": 4 if alpha else 3,
        "dtype": "uint8",
        "crs": img.rio.crs,
        "transform": img.rio.transform(),
    }
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile) as dst:
        dst.write(img.values, [1, 2, 3])
        if alpha:
            dst.write(mask, 4)
            dst.colorinterp = [
                rasterio.enums.ColorInterp.red,
                rasterio.enums.ColorInterp.green,
                rasterio.enums.ColorInterp.blue,
                rasterio.enums.ColorInterp.alpha,
            ]
        else:
            dst.write_mask(mask)
    return path, img


@pytest.mark.parametrize("alpha", [False, True], ids=["internal-mask", "alpha-band"])
@pytest.mark.parametrize("chunks", [None, 64])
def test_masked_pixels_are_nodata_in_the_map(tmp_path, tiny_package, alpha, chunks):
    path, img = _masked_scene(tmp_path / "masked.tif", alpha=alpha)
    opened = xlc.open_raster(path, chunks=chunks, bands=["red", "green", "blue"])
    assert opened.sizes["band"] == 3  # an alpha band is a mask, not a band
    labels = xlc.predict(opened, tiny_package).values
    assert (labels[32:64, 40:80] == NODATA_LABEL).all()
    assert (labels == NODATA_LABEL).sum() == 32 * 40
    np.testing.assert_array_equal(opened.values[:, :32], img.values[:, :32])


@pytest.mark.parametrize("chunks", [None, 32])
def test_transparent_pixels_of_an_rgba_colour_mask_are_unlabelled(tmp_path, chunks):
    rgba = np.zeros((4, 64, 64), np.uint8)
    rgba[:3, :, :32] = np.array([60, 16, 152], np.uint8)[:, None, None]
    rgba[:3, :, 32:] = np.array([226, 169, 41], np.uint8)[:, None, None]
    rgba[3] = 255
    rgba[3, :10] = 0  # transparent: not labelled, whatever colour is underneath
    rgba[:3, :10] = 7  # a colour that is no class
    path = tmp_path / "mask.png"
    with rasterio.open(path, "w", driver="PNG", width=64, height=64, count=4, dtype="uint8") as dst:
        dst.write(rgba)
    colors = {(60, 16, 152): 1, (226, 169, 41): 5}
    labels = xlc.open_color_mask(path, colors, pixel_grid=True, chunks=chunks).values
    assert (labels[:10] == NODATA_LABEL).all()
    assert (labels[10:, :32] == 1).all() and (labels[10:, 32:] == 5).all()


def test_gcp_only_raster_is_refused_with_a_fix(tmp_path):
    path = tmp_path / "gcps.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8"
    ) as dst:
        dst.write(make_image(64, 64, crs=None).values)
        points = [(0, 0), (0, 64), (64, 0), (64, 64)]
        dst.gcps = (
            [GroundControlPoint(r, c, 300000 + 10 * c, 4100000 - 10 * r) for r, c in points],
            CRS.from_epsg(32612),
        )
    with pytest.raises(xlc.XLandcoverError, match=r"ground control points.*gdalwarp"):
        xlc.open_raster(path)


# --- model packages ---------------------------------------------------------------------------


def _set(key, value):
    def edit(meta):
        meta[key] = value

    return edit


def _set_arg(key, value):
    def edit(meta):
        meta["arch_kwargs"][key] = value

    return edit


def _four_bands(meta):
    meta.update(bands=["red", "green", "blue", "nir"], mean=[0.0] * 4, std=[1.0] * 4)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_four_bands, "in_channels=3 but 4 bands"),
        (_set_arg("classes", 3), "classes=3 but 4 classes"),
        (_set("mean", [float("inf"), 110.0, 90.0]), "mean must be finite numbers"),
        (_set("mean", ["100", "110", "90"]), "mean must be finite numbers"),
        (_set("std", [50.0, float("nan"), 40.0]), "std must be finite numbers"),
        (_set("window", "64"), "window must be an integer"),
        (_set_arg("encoder_name", "tu-hf-hub:timm/resnet18.a1_in1k"), "never does"),
    ],
    ids=["bands", "classes", "inf-mean", "string-mean", "nan-std", "window", "hf-hub"],
)
def test_inconsistent_package_metadata_is_refused_at_load(tmp_path, tiny_package, edit, match):
    path = edited_package(tiny_package.path, tmp_path / "bad.xlc", edit)
    with pytest.raises(ModelPackageError, match=match):
        xlc.load_model(path)


def test_weights_with_another_class_count_are_refused_at_load(tmp_path, tiny_package):
    def three_outputs(state):
        state["segmentation_head.0.weight"] = state["segmentation_head.0.weight"][:3]
        state["segmentation_head.0.bias"] = state["segmentation_head.0.bias"][:3]

    path = edited_package(tiny_package.path, tmp_path / "bad.xlc", tensors=three_outputs)
    with pytest.raises(ModelPackageError, match="3 output channels but the metadata lists 4"):
        xlc.load_model(path)


def test_an_unknown_encoder_is_named_as_an_encoder(tmp_path, tiny_package):
    path = edited_package(
        tiny_package.path, tmp_path / "bad.xlc", _set_arg("encoder_name", "resnet3")
    )
    model = xlc.load_model(path)
    with pytest.raises(ModelPackageError, match=r"unknown encoder 'resnet3'.*'resnet34'"):
        xlc.predict(make_image(64, 64), model)


def test_deeply_nested_metadata_is_refused_not_a_recursion_error(tmp_path, tiny_package):
    deep = "[" * 100_000 + "]" * 100_000
    raw = tiny_package.metadata.to_json()[:-1] + f', "description2": {deep}}}'
    path = edited_package(tiny_package.path, tmp_path / "deep.xlc", raw_meta=raw)
    with pytest.raises(ModelPackageError, match="nested deeper"):
        xlc.load_model(path)
    nested: dict = {}
    for _ in range(40):
        nested = {"a": nested}
    with pytest.raises(ModelPackageError, match="nested deeper"):  # nor can one be saved
        xlc.save_model(
            tiny_net(),
            tmp_path / "deep2.xlc",
            bands=["red", "green", "blue"],
            classes=[{"id": i, "name": str(i)} for i in range(4)],
            extra=nested,
        )


def test_a_hub_encoder_never_reaches_the_network(tmp_path, tiny_package, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("xlandcover tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    path = edited_package(
        tiny_package.path,
        tmp_path / "hub.xlc",
        _set_arg("encoder_name", "tu-hf-hub:timm/resnet18.a1_in1k"),
    )
    with pytest.raises(ModelPackageError, match="network"):
        xlc.predict(make_image(64, 64), str(path))
    from xlandcover.model import build_architecture

    with pytest.raises(ModelPackageError, match="remote or file source"):
        build_architecture("Unet", {"encoder_name": "hf-hub:someone/model", "classes": 4})


# --- the training data's range ----------------------------------------------------------------


class _Chips:
    """A stand-in for xlandcover.Chips: ``read(i)`` -> (image, labels, valid)."""

    def __init__(self, images):
        self.images = images

    n_bands = 3

    def __len__(self):
        return len(self.images)

    def read(self, i):
        image = self.images[i]
        return image, np.zeros(image.shape[1:], np.uint8), np.ones(image.shape[1:], bool)


def _forget_range_warnings():
    from xlandcover.prediction._predict import _RANGE_WARNED

    _RANGE_WARNED.clear()


@pytest.fixture(scope="module")
def ranged_package(tmp_path_factory):
    """A model trained on uint16-like data: values 5000-15000 per band."""
    from xlandcover.model import band_range

    rng = np.random.default_rng(0)
    chips = _Chips([rng.integers(5000, 15000, (3, 32, 32)) for _ in range(4)])
    rng_ = band_range(chips)
    assert all(4900 < lo < 5200 and 14800 < hi < 15000 for lo, hi in rng_)
    return xlc.save_model(
        tiny_net(),
        tmp_path_factory.mktemp("m") / "ranged.xlc",
        bands=["red", "green", "blue"],
        classes=[{"id": i, "name": str(i)} for i in range(1, 5)],
        normalization={"mean": [10000.0] * 3, "std": [3000.0] * 3},
        window=64,
        input_range=rng_,
    )


def _scene(values: np.ndarray):
    img = make_image(*values.shape[1:])
    return img.copy(data=values)


@pytest.mark.parametrize(
    "kind",
    ["int8", "1-bit", "uint32-scaled"],
)
@pytest.mark.parametrize("backend", ["numpy", "dask"])
def test_images_far_outside_the_training_range_warn_once(ranged_package, kind, backend):
    rng = np.random.default_rng(1)
    values = {
        "int8": rng.integers(-128, 127, (3, 128, 128)).astype(np.int8),
        "1-bit": rng.integers(0, 2, (3, 128, 128)).astype(np.uint8),
        "uint32-scaled": (rng.integers(5000, 15000, (3, 128, 128)) * 65536).astype(np.uint32),
    }[kind]
    img = _scene(values)
    if backend == "dask":
        img = img.chunk({"y": 64, "x": 64})
    _forget_range_warnings()
    with pytest.warns(InputRangeWarning, match="far outside the range the model was trained on"):
        xlc.predict(img, ranged_package).compute(scheduler="sync")
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputRangeWarning)
        xlc.predict(img, ranged_package).compute(scheduler="sync")  # once per model


def test_an_image_in_the_training_range_does_not_warn(ranged_package):
    rng = np.random.default_rng(2)
    _forget_range_warnings()
    img = _scene(rng.integers(6000, 14000, (3, 128, 128)).astype(np.uint16))
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputRangeWarning)
        xlc.predict(img, ranged_package).compute()
        xlc.predict(img.chunk({"y": 64, "x": 64}), ranged_package).compute()


def test_packages_without_a_recorded_range_still_load_and_do_not_warn(tiny_package):
    from importlib import resources

    with resources.as_file(resources.files("xlandcover") / "data" / "demo-dubai.xlc") as p:
        demo = xlc.load_model(p)
    assert demo.metadata.input_range is None and tiny_package.metadata.input_range is None
