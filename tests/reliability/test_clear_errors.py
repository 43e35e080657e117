"""Promise: every mistake a user can make is one clear :class:`XLandcoverError` that names the
user's path and the fix, never a traceback from dask, GDAL, zarr, json or distributed."""

from __future__ import annotations

import json
import logging
import os
import socket
import time

import numpy as np
import pytest

import xlandcover as xlc
from xlandcover.cli import main
from xlandcover.cluster import client_for
from xlandcover.errors import (
    ChunkSizeError,
    InputFileError,
    InputNotFoundError,
    OutputNotWritableError,
    OverwriteRefusedError,
    SchedulerError,
    SchedulerUnreachableError,
)

from ..conftest import ZION, make_image
from .helpers import labels, listing, tmpfs

LANDSAT = ZION / "landsat8_b2345_stack.tif"


@pytest.mark.parametrize("chunks", [0, -512])
def test_chunks_that_are_not_positive_are_refused(chunks, tiny_package):
    with pytest.raises(ChunkSizeError, match="positive number of pixels"):
        xlc.open_raster(LANDSAT, chunks=chunks)
    with pytest.raises(ChunkSizeError, match="positive number of pixels"):
        xlc.predict(make_image(64, 64), tiny_package, chunks=chunks)


def test_cli_refuses_a_chunk_size_that_is_not_positive(tmp_path, tiny_package, caplog):
    model = ["--model", str(tiny_package.path)]
    rc = main(["predict", str(LANDSAT), *model, "--cog", str(tmp_path / "x.tif"), "--chunk", "0"])
    assert rc == 1 and "--chunk=0 is not a chunk size" in caplog.text


@pytest.mark.parametrize(
    ("address", "match"),
    [
        ("tcp://10.0.0.5", "not of the form tcp://host:port"),
        ("tcp://:8786", "not of the form tcp://host:port"),
        ("tcp://host:port", "not of the form tcp://host:port"),
        ("udp://host:8786", "not of the form tcp://host:port"),
        ("cluster", "unknown scheduler 'cluster'"),
    ],
)
def test_a_bad_scheduler_is_refused_with_the_form_expected(address, match):
    with pytest.raises(SchedulerError, match=match), client_for(address):
        pass


def test_a_refused_scheduler_port_fails_at_once():
    with socket.socket() as s:  # a free port: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with (
        pytest.raises(SchedulerUnreachableError, match=r"no Dask scheduler answers.*refused"),
        client_for(f"tcp://127.0.0.1:{port}"),
    ):
        pass
    assert time.monotonic() - start < 5


def test_cli_refuses_a_bad_scheduler_before_any_work(tmp_path, tiny_package, caplog):
    model = ["--model", str(tiny_package.path)]
    out = ["--out", str(tmp_path / "x.zarr"), "--scheduler", "tcp://10.0.0.5"]
    rc = main(["predict", str(LANDSAT), *model, *out])
    assert rc == 1 and "tcp://host:port" in caplog.text
    assert listing(tmp_path) == []


def test_a_truncated_item_collection_names_the_file(tmp_path):
    from xlandcover.stac import load_stac

    items = tmp_path / "search.json"
    items.write_text('{"type": "FeatureCollection", "features": [{"type": "Fea')
    with pytest.raises(InputFileError, match=r"search\.json is not valid JSON .*line 1"):
        load_stac(str(items), preset="sentinel-2-l2a", bbox=(15.4, 47.0, 15.5, 47.1))


@pytest.mark.parametrize("content", ["empty", "plain"])
def test_a_folder_that_is_not_a_zarr_store_is_refused(tmp_path, content):
    folder = tmp_path / "images"
    folder.mkdir()
    if content == "plain":
        (folder / "notes.txt").write_text("hi")
    what = "an empty folder" if content == "empty" else "not a Zarr store"
    with pytest.raises(InputFileError, match=f"images is {what}"):
        xlc.open_raster(folder)


def test_a_vrt_with_a_missing_source_names_the_source(tmp_path):
    vrt = tmp_path / "mosaic.vrt"
    vrt.write_text(
        '<VRTDataset rasterXSize="64" rasterYSize="64"><SRS>EPSG:32612</SRS>'
        "<GeoTransform>300000, 30, 0, 4100000, 0, -30</GeoTransform>"
        '<VRTRasterBand dataType="UInt16" band="1"><SimpleSource>'
        f'<SourceFilename relativeToVRT="0">{tmp_path}/moved-away.tif</SourceFilename>'
        "<SourceBand>1</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>"
    )
    with pytest.raises(InputNotFoundError, match=r"moved-away\.tif.*gdalbuildvrt"):
        xlc.open_raster(vrt)


@pytest.mark.parametrize("keep", [0.5, 0.002])
def test_a_truncated_geotiff_is_refused_when_opened(tmp_path, keep):
    data = LANDSAT.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(InputFileError, match=r"cut\.tif .*(truncated|copy it again)"):
        xlc.open_raster(cut)


@pytest.fixture
def read_only_folder(tmp_path):
    folder = tmp_path / "read-only"
    if os.geteuid() != 0:
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    with tmpfs(folder, "1m", options="ro") as mounted:  # root ignores permissions
        yield mounted


@pytest.mark.parametrize("writer", ["to_cog", "to_zarr"])
def test_a_read_only_output_folder_is_named_not_a_hidden_temporary(read_only_folder, writer):
    target = read_only_folder / "map.out"
    with pytest.raises(OutputNotWritableError) as err:
        getattr(xlc, writer)(labels(), target)
    assert str(target) in str(err.value) and "choose an output folder" in str(err.value)
    assert ".partial" not in str(err.value) and ".lock" not in str(err.value)


def test_cli_to_a_read_only_folder_is_named(read_only_folder, tiny_package, caplog):
    out = read_only_folder / "map.zarr"
    model = ["--model", str(tiny_package.path), "--bands", "blue,green,red,nir"]
    rc = main(["predict", str(LANDSAT), *model, "--out", str(out), "--scheduler", "inprocess"])
    assert rc == 1 and f"cannot write {out}" in caplog.text and ".partial" not in caplog.text


def test_to_zarr_with_overwrite_onto_a_file_fails_before_computing(tmp_path):
    target = tmp_path / "map.zarr"
    target.write_text("not a store")
    computed = []

    def record(block):
        if block.size:  # not dask's probe of the output type
            computed.append(1)
        return block

    data = labels()
    data = data.copy(data=data.data.map_blocks(record, dtype=np.uint8))
    with pytest.raises(OverwriteRefusedError, match="not an xlandcover Zarr store"):
        xlc.to_zarr(data, target, overwrite=True)
    assert computed == [] and target.read_text() == "not a store"


def test_a_corrupt_model_package_is_one_line_from_the_cli(tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger="xlandcover")
    bad = tmp_path / "bad.xlc"
    bad.write_bytes(b"\x00" * 64)
    rc = main(["predict", str(LANDSAT), "--model", str(bad), "--cog", str(tmp_path / "x.tif")])
    assert rc == 1 and "not a readable model package" in caplog.text


def test_a_lock_file_cut_short_by_a_kill_is_taken_over_not_a_json_traceback(tmp_path):
    lock = tmp_path / ".map.zarr.lock"
    lock.write_text('{"pid": 12')
    old = time.time() - 3600
    os.utime(lock, (old, old))
    xlc.to_zarr(labels(), tmp_path / "map.zarr")
    assert not lock.exists() and json.loads((tmp_path / "map.zarr" / "zarr.json").read_text())
