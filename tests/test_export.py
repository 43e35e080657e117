"""Chip export: image/label GeoTIFF pairs and a GeoParquet index that other tools read."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio

import xlandcover as xlc
from xlandcover.errors import OutputExistsError

from .conftest import make_image
from .test_chips import make_labels


def test_split_export_writes_pairs_and_an_index_that_match_the_chips(tmp_path):
    img = make_image(96, 96).rio.write_nodata(0)
    img.values[:, :4, :4] = 0  # a little image nodata
    lab = make_labels(img, ids=(1, 2)).rio.write_nodata(9)
    lab.values[40:50, 40:50] = 9  # unlabelled
    classes = [
        {"id": 1, "name": "water", "color": "#0000ff"},
        {"id": 2, "name": "forest", "color": "#00ff00"},
    ]
    chips = xlc.sample_chips(img, lab, size=32, classes=classes)
    splits = xlc.spatial_split(chips, block_size=320.0, fractions=(0.6, 0.2, 0.2), seed=0)
    index_path = splits.export(tmp_path / "out")
    index = gpd.read_parquet(index_path)
    assert len(index) == len(chips) and index.crs == img.rio.crs
    assert set(index["split"]) == {"train", "val", "test"}
    assert list(index.columns[:4]) == ["chip", "source", "group", "split"]
    for _, rec in index.iterrows():
        i = int(np.flatnonzero(chips.table["chip"] == rec["chip"])[0])
        image, labels, valid = chips.read(i)
        with rasterio.open(tmp_path / "out" / rec["image"]) as src:
            np.testing.assert_array_equal(src.read(), image)
            assert src.crs == img.rio.crs and src.nodata == 0
            assert src.descriptions == ("red", "green", "blue")
            assert tuple(src.bounds) == pytest.approx(rec.geometry.bounds)
        with rasterio.open(tmp_path / "out" / rec["labels"]) as src:
            mask = src.read(1)
            assert src.nodata == 255 and src.tags(1)["CLASS_2"] == "forest"
            assert src.colormap(1)[1][:3] == (0, 0, 255)
        want = np.where(valid & np.isin(labels, (1, 2)), labels, 255)
        np.testing.assert_array_equal(mask, want)
        assert rec["n_1"] == (mask == 1).sum() and rec["n_2"] == (mask == 2).sum()
        assert rec["labelled"] == (mask != 255).sum()
    with pytest.raises(OutputExistsError, match="overwrite"):
        splits.export(tmp_path / "out")
    one = chips.subset([0, 1]).export(tmp_path / "out", split="train", overwrite=True)
    assert (
        len(gpd.read_parquet(one)) == 2 and len(list((tmp_path / "out" / "images").iterdir())) == 2
    )
