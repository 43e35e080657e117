"""Promises about data loss: xlandcover never destroys what it did not write, and never
publishes an output whose blocks did not reach the disk."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import rasterio
import xarray as xr

import xlandcover as xlc
from xlandcover.cli import main
from xlandcover.errors import (
    AllNodataError,
    OutputConflictError,
    OutputWriteError,
    OverwriteRefusedError,
)

from ..conftest import make_image
from .helpers import IDS, NAMES, labels, listing, probabilities, tmpfs


@pytest.fixture
def user_folder(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "thesis.docx").write_bytes(b"two years of work")
    return folder


@pytest.mark.parametrize("writer", ["to_zarr", "to_cog"])
def test_overwrite_refuses_a_folder_that_is_not_an_xlandcover_output(user_folder, writer):
    with pytest.raises(OverwriteRefusedError, match=r"not an xlandcover .*move or delete it"):
        getattr(xlc, writer)(labels(), user_folder, overwrite=True)
    assert (user_folder / "thesis.docx").read_bytes() == b"two years of work"
    assert listing(user_folder.parent) == ["results", "results/thesis.docx"]


def test_overwrite_refuses_a_geotiff_that_xlandcover_did_not_write(tmp_path):
    photo = tmp_path / "photo.tif"
    make_image(64, 64).rio.to_raster(photo)
    before = photo.read_bytes()
    with pytest.raises(OverwriteRefusedError, match="not an xlandcover GeoTIFF"):
        xlc.to_cog(labels(), photo, overwrite=True)
    assert photo.read_bytes() == before


def test_cli_overwrite_refuses_a_folder_that_is_not_an_xlandcover_output(
    tmp_path, user_folder, tiny_package, caplog
):
    scene = tmp_path / "scene.tif"
    make_image(128, 128).rio.to_raster(scene)
    args = ["predict", str(scene), "--model", str(tiny_package.path), "--out", str(user_folder)]
    args += ["--overwrite", "--scheduler", "inprocess", "--chunk", "64"]
    args += ["--bands", "red,green,blue"]
    assert main(args) == 1
    assert "not an xlandcover Zarr store" in caplog.text
    assert (user_folder / "thesis.docx").read_bytes() == b"two years of work"


@pytest.mark.parametrize("kind", ["current", "earlier version"])
def test_overwrite_replaces_an_earlier_xlandcover_output(tmp_path, kind):
    first = labels()
    cog, store = xlc.to_cog(first, tmp_path / "a.tif"), xlc.to_zarr(first, tmp_path / "a.zarr")
    if kind == "earlier version":  # outputs written before the record existed
        cog.unlink()
        names = json.dumps(dict(zip(IDS, NAMES, strict=True)))
        first.rio.to_raster(cog, tags={"class_names": names})
        meta = json.loads((store / "zarr.json").read_text())
        meta["attributes"].pop("xlandcover_output")
        (store / "zarr.json").write_text(json.dumps(meta))
    second = labels().where(labels() != 1, 2).astype(np.uint8)
    second.attrs = first.attrs
    xlc.to_cog(second, cog, overwrite=True)
    xlc.to_zarr(second, store, overwrite=True)
    with rasterio.open(cog) as src:
        np.testing.assert_array_equal(src.read(1), second.values)
    np.testing.assert_array_equal(
        xr.open_zarr(store, consolidated=False)["landcover"].values, second.values
    )
    assert listing(tmp_path) == sorted(["a.tif", "a.tif.aux.xml", *_store_files(store, "a.zarr")])


def _store_files(store, name):
    return [f"{name}/{p}" for p in listing(store)] + [name]


@pytest.fixture
def cli_scene(tmp_path, tiny_package):
    scene = tmp_path / "scene.tif"
    make_image(128, 128).rio.to_raster(scene)
    opts = ["--model", str(tiny_package.path), "--scheduler", "inprocess", "--chunk", "64"]
    return scene, [*opts, "--bands", "red,green,blue"]


def test_cli_refuses_the_same_path_for_out_and_cog(tmp_path, cli_scene, caplog):
    scene, opts = cli_scene
    same = tmp_path / "map"
    rc = main(["predict", str(scene), *opts, "--out", str(same), "--cog", str(same), "--overwrite"])
    assert rc == 1 and "two outputs are the same path" in caplog.text
    assert not same.exists()


@pytest.mark.parametrize("flag", ["--cog", "--out"])
def test_cli_refuses_to_write_the_map_over_its_input(cli_scene, flag, caplog):
    scene, opts = cli_scene
    before = scene.read_bytes()
    assert main(["predict", str(scene), *opts, flag, str(scene), "--overwrite"]) == 1
    assert "is also an input" in caplog.text
    assert scene.read_bytes() == before


def test_outputs_that_are_an_input_are_refused_by_the_api_too(tmp_path):
    from xlandcover.outputs import check_distinct

    scene = tmp_path / "scene.tif"
    scene.touch()
    with pytest.raises(OutputConflictError, match="is also an input"):
        check_distinct([tmp_path / "." / "scene.tif"], [scene])
    with pytest.raises(OutputConflictError, match="is also an input"):
        check_distinct([tmp_path], [scene])  # a store whose folder holds the input


@pytest.mark.parametrize("kind", ["labels", "probabilities"])
def test_a_block_gdal_failed_to_write_fails_the_write_instead_of_publishing(
    tmp_path, monkeypatch, kind
):
    """GDAL may only report a write error (the block is then missing from the file): the
    read-back check catches it, and nothing is published."""
    original = rasterio.io.DatasetWriter.write
    calls = []

    def lossy_write(self, arr, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the third block never reaches the file
            logging.getLogger("rasterio._env").info(
                "GDAL signalled an error: err_no=3, msg='Free disk space available is 0 bytes'"
            )
            return None
        return original(self, arr, *args, **kwargs)

    monkeypatch.setattr(rasterio.io.DatasetWriter, "write", lossy_write)
    data = labels() if kind == "labels" else probabilities()
    with pytest.raises(OutputWriteError, match=r"no space left|read back differ"):
        xlc.to_cog(data, tmp_path / "map.tif")
    assert listing(tmp_path) == []


def test_a_disk_full_for_a_moment_fails_the_write_naming_the_cause(tmp_path):
    """The disk fills up while the COG is streamed and frees again as soon as GDAL fails:
    the write must fail (not publish missing blocks) and say the disk was full."""
    with tmpfs(tmp_path / "disk", "32m") as disk:
        ballast = disk / "ballast"
        computed = []

        def fill_after_two_blocks(block):
            computed.append(1)
            if len(computed) == 2:
                with ballast.open("wb") as f, _quietly():
                    while True:
                        f.write(b"\0" * 2**16)
                        f.flush()
            return block

        class FreeOnGdalError(logging.Handler):
            def emit(self, record):
                if ballast.exists() and "error" in record.getMessage().lower():
                    ballast.unlink()

        probs = probabilities(600, 700, chunk=256)
        probs = probs.copy(data=probs.data.map_blocks(fill_after_two_blocks, dtype=np.float32))
        logger = logging.getLogger("rasterio._env")
        handler, level = FreeOnGdalError(), logger.level
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        try:
            full = r"no space left on device|could not write the data to the disk"
            with pytest.raises(OutputWriteError, match=full) as err:
                xlc.to_cog(probs, disk / "p.tif")
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)
        assert str(disk / "p.tif") in str(err.value) and ".partial" not in str(err.value)
        ballast.unlink(missing_ok=True)
        assert listing(disk) == []


class _quietly:
    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        return isinstance(value, OSError)


@pytest.mark.parametrize("writer", ["to_cog", "to_zarr"])
def test_a_full_disk_is_reported_as_such_not_as_all_nodata(tmp_path, writer):
    with tmpfs(tmp_path / "disk", "2m") as disk:
        target = disk / ("p.tif" if writer == "to_cog" else "p.zarr")
        with pytest.raises(OutputWriteError, match="no space left on device") as err:
            getattr(xlc, writer)(probabilities(800, 800, chunk=256, noise=1.0), target)
        assert not isinstance(err.value, AllNodataError)
        assert str(target) in str(err.value) and ".partial" not in str(err.value)
        assert listing(disk) == []
