"""Run configurations with vector labels and separate evaluation labels, end to end: train on
polygons, score on a dense reference of the held-out blocks (model and forest), export chips."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio.features
import shapely
import torch

import xlandcover as xlc
from xlandcover.cli import main
from xlandcover.config import load_config
from xlandcover.splits import _gaps, held_out, labelled_bounds

from .conftest import make_image
from .test_train import easy_labels


def patches(dense: np.ndarray, transform, every: int = 40, side: int = 8) -> gpd.GeoDataFrame:
    """Polygons vectorised from small windows of a dense label raster, as if digitised."""
    geoms, values = [], []
    for r in range(4, dense.shape[0] - side, every):
        for c in range(4, dense.shape[1] - side, every):
            window = np.zeros_like(dense)
            window[r : r + side, c : c + side] = dense[r : r + side, c : c + side]
            for g, v in rasterio.features.shapes(window, transform=transform):
                if v:
                    geoms.append(shapely.geometry.shape(g))
                    values.append({1: "dark", 2: "bright"}[int(v)])
    return gpd.GeoDataFrame({"cover": values}, geometry=geoms)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("vector-run")
    img = make_image(192, 192, seed=7)
    dense = easy_labels(img)
    img.rio.to_raster(root / "scene.tif")
    dense.rio.write_nodata(0).rio.to_raster(root / "dense.tif")
    table = patches(dense.values, img.rio.transform()).set_crs(img.rio.crs).to_crs(4326)
    table.to_file(root / "samples.gpkg")
    return root, img, dense


CONFIG = """
[data]
images = "scene.tif"
labels = "samples.gpkg"
label_column = "cover"
bands = ["red", "green", "blue"]
chunks = 64

[[classes]]
id = 1
name = "dark"
color = "#000000"

[[classes]]
id = 2
name = "bright"
color = "#ffffff"

[chips]
size = 32
stride = 16

[split]
block_size = 960.0
fractions = [0.6, 0.2, 0.2]
buffer = 40.0

[evaluate]
labels = "dense.tif"

[train]
encoder = "tu-test_efficientnet"
arch_kwargs = { decoder_channels = [16, 8, 8, 8, 8] }
epochs = 1
batch_size = 4
steps_per_epoch = 2
optimizer = "sgd"
schedule = "poly"
lr = 0.01

[output]
dir = "run"
"""


def test_vector_and_evaluation_keys_are_validated(scene):
    root, _, _ = scene
    (root / "bad.toml").write_text(CONFIG.replace('label_column = "cover"', "label_colum = 1"))
    with pytest.raises(xlc.errors.ConfigError, match="did you mean label_column"):
        load_config(root / "bad.toml")
    (root / "bad.toml").write_text(CONFIG.replace('labels = "dense.tif"', 'label = "dense.tif"'))
    with pytest.raises(xlc.errors.ConfigError, match=r"label in \[evaluate\]; did you mean labels"):
        load_config(root / "bad.toml")
    (root / "bad.toml").write_text(CONFIG.replace("chunks = 64", 'chunks = 64\noverlap = "top"'))
    with pytest.raises(xlc.errors.ConfigError, match="overlap"):
        load_config(root / "bad.toml")


def test_vector_labels_from_the_config_and_held_out_dense_chips(scene):
    root, img, dense = scene
    (root / "run.toml").write_text(CONFIG)
    cfg = load_config(root / "run.toml")
    chips = cfg.chips()
    polygon_px = int(chips.counts.sum())
    assert "features" in chips.table and chips.table["labelled"].max() < 32 * 32
    # the burnt polygons agree with the dense labels they were drawn from
    labels = cfg.data()[1][0].values
    assert (labels[labels != 255] == dense.values[labels != 255]).all()
    splits = cfg.splits(chips)
    test = cfg.evaluation_chips(splits, "test")
    assert test.counts.sum() > polygon_px / 5  # dense: far more pixels than the polygons
    assert (test.table["labelled"] == 32 * 32).all()
    box = ["minx", "miny", "maxx", "maxy"]
    for other in (splits.train, splits.val):  # no scored pixel was in a train or val chip
        assert (_gaps(test.table[box].to_numpy(), other.table[box].to_numpy()) >= 0).all()
        gaps = _gaps(labelled_bounds(test.table), labelled_bounds(other.table))
        assert (gaps >= 40.0).all()
    blocks = np.floor(test.table[["cx", "cy"]].to_numpy() / 960.0).astype(int)
    assigned = dict(zip(splits.assignment["block"], splits.assignment["split"], strict=True))
    frame = chips.sources[0].frame
    assert all(assigned[f"{frame}|{bx}|{by}"] == "test" for bx, by in blocks)
    # by feature: every reference chip away from the train and val chips
    by_feature = xlc.spatial_split(chips, by="feature", fractions=(0.6, 0.2, 0.2), seed=1)
    reference = xlc.sample_chips(img, dense.rio.write_nodata(0), size=32)
    kept = held_out(by_feature, reference)
    assert 0 < len(kept) < len(reference)


def test_cli_train_on_polygons_evaluate_on_dense_labels_and_export_chips(scene, caplog):
    caplog.set_level("INFO", logger="xlandcover")
    root, _, _ = scene
    config = root / "run.toml"
    config.write_text(CONFIG)
    assert main(["train", str(config), "--no-progress"]) == 0
    model = root / "run" / "best.xlc"
    assert xlc.load_model(model).metadata.class_names == ("dark", "bright")
    assert (root / "run" / "results.png").stat().st_size > 0  # the gallery, beside curves.png
    state = torch.load(root / "run" / "last.pt", weights_only=False)["optimizer"]
    assert state["param_groups"][0]["momentum"] == 0.9 and state["param_groups"][0]["nesterov"]
    assert main(["evaluate", str(config), "--model", str(model), "--baseline"]) == 0
    assert "Scoring on the [evaluate] labels" in caplog.text
    out = root / "run" / "eval-test"
    comparison = json.loads((out / "comparison.json").read_text())
    scored = comparison["model"]["total"]
    assert comparison["random_forest"]["total"] == scored
    cfg = load_config(config)
    assert scored == int(cfg.evaluation_chips(cfg.splits(), "test").counts.sum())
    assert main(["chips", str(config), "--out", str(root / "chips")]) == 0
    index = gpd.read_parquet(root / "chips" / "index.parquet")
    assert len(index) == sum(len(p) for p in cfg.splits()) and index.crs == "EPSG:32612"
    assert main(["chips", str(config), "--out", str(root / "chips")]) == 1  # exists: refused


def test_unknown_optimizer_is_refused_before_any_work(scene):
    root, _, _ = scene
    (root / "run.toml").write_text(CONFIG)
    splits = load_config(root / "run.toml").splits()
    with pytest.raises(xlc.errors.TrainingSettingsError, match="'adamw' or 'sgd'"):
        xlc.train(splits, optimizer="adam", out_dir=root / "never", progress=False)
    assert not (root / "never").exists()
