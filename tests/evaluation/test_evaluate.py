"""evaluate() scores the predictor's maps; the random-forest baseline; CLI train/evaluate."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import xarray as xr
from sklearn.metrics import confusion_matrix as sk_confusion

import xlandcover as xlc
from xlandcover.cli import main
from xlandcover.errors import BandMismatchError, UnknownClassError

from ..conftest import make_image
from ..training.test_train import easy_labels


def as_labels(values: np.ndarray, img: xr.DataArray, nodata=None) -> xr.DataArray:
    lab = xr.DataArray(values, dims=("y", "x"), coords={"y": img.y, "x": img.x})
    lab = lab.rio.write_crs(img.rio.crs)
    return lab if nodata is None else lab.rio.write_nodata(nodata)


def test_scores_equal_sklearn_on_the_predicted_map(tiny_package):
    img = make_image(96, 128, seed=4)
    pred = xlc.predict(img, tiny_package).values
    rng = np.random.default_rng(0)
    truth = rng.choice(np.array([1, 2, 5, 7, 0], dtype=np.uint8), size=pred.shape)
    report = xlc.evaluate(img.chunk({"y": 40, "x": 50}), as_labels(truth, img, 0), tiny_package)
    keep = truth != 0
    want = sk_confusion(truth[keep], pred[keep], labels=[1, 2, 5, 7])
    np.testing.assert_array_equal(report.confusion, want)
    assert report.class_names == ("water", "forest", "built", "bare")
    perfect = xlc.evaluate(img, as_labels(pred, img), tiny_package)
    assert perfect.pixel_accuracy == 1.0 and perfect.kappa == pytest.approx(1.0)


def test_split_scores_each_covered_pixel_once(tiny_package):
    img = make_image(96, 96, seed=5)
    pred = xlc.predict(img, tiny_package).values
    lab = as_labels(pred, img)
    chips = xlc.sample_chips(img, lab, size=32, stride=16)  # overlapping chips
    part = chips.subset(chips.table["row"] + chips.table["col"] <= 32)
    covered = np.zeros(pred.shape, dtype=bool)
    for r, c in part.table[["row", "col"]].to_numpy():
        covered[r : r + 32, c : c + 32] = True
    report = xlc.evaluate(model=tiny_package, partition=part)
    assert report.total == covered.sum() < pred.size
    assert xlc.evaluate(img, lab, tiny_package, partition=part).total == covered.sum()


def test_bad_input_band_mismatch_and_unknown_label_values(tiny_package):
    img = make_image(64, 64)
    four = make_image(64, 64, bands=("red", "green", "nir"))  # no blue band
    lab = as_labels(np.ones((64, 64), dtype=np.uint8), img)
    with pytest.raises(BandMismatchError):
        xlc.evaluate(four, lab, tiny_package)
    with pytest.raises(UnknownClassError, match="3"):
        xlc.evaluate(img, as_labels(np.full((64, 64), 3, np.uint8), img), tiny_package)


def test_random_forest_baseline_learns_a_per_pixel_rule():
    img = make_image(128, 128, seed=6)
    chips = xlc.sample_chips(img, easy_labels(img), size=32)
    splits = xlc.spatial_split(chips, block_size=640.0, fractions=(0.6, 0.2, 0.2), seed=0)
    base = xlc.random_forest_baseline(splits, n_estimators=10, max_pixels=5000)
    assert base.report.pixel_accuracy > 0.97
    assert base.n_scored_pixels == len(splits.test) * 32 * 32 == base.report.total
    strided = xlc.random_forest_baseline(splits, n_estimators=10, max_pixels=5000, eval_stride=2)
    assert strided.n_scored_pixels == len(splits.test) * 16 * 16


def test_cli_train_then_evaluate_with_baseline(tmp_path):
    img = make_image(128, 128, seed=7)
    for name, arr in (("scene", img), ("labels", easy_labels(img))):
        folder = tmp_path / name
        folder.mkdir()
        arr.rio.to_raster(folder / "a.tif")
    config = tmp_path / "run.toml"
    config.write_text(
        """
[data]
images = "scene/*.tif"
labels = "labels/*.tif"
bands = ["red", "green", "blue"]

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

[split]
block_size = 640.0
fractions = [0.6, 0.2, 0.2]

[train]
encoder = "tu-test_efficientnet"
arch_kwargs = { decoder_channels = [16, 8, 8, 8, 8] }
epochs = 1
batch_size = 4
steps_per_epoch = 2

[output]
dir = "run"
"""
    )
    assert main(["train", str(config), "--no-progress"]) == 0
    model = tmp_path / "run" / "best.xlc"
    assert xlc.load_model(model).metadata.class_names == ("dark", "bright")
    assert main(["evaluate", str(config), "--model", str(model), "--baseline"]) == 0
    out = tmp_path / "run" / "eval-test"
    for f in ("report.json", "confusion.png", "per-class.png", "baseline-report.json",
              "comparison.json"):  # fmt: skip
        assert (out / f).stat().st_size > 0
    with rasterio.open(tmp_path / "labels" / "a.tif") as src:
        assert src.count == 1


@pytest.mark.parametrize("chunks", [(64, 96), (23, 17), (50, 40)])
def test_only_pixels_under_chips_are_scored_whatever_the_chunks(chunks):
    """The chip mask of a region is placed by each block's position, so any chunking of the
    prediction masks the same pixels."""
    from xlandcover.evaluation._evaluate import NODATA_LABEL, Region, _masked_truth

    labels = np.random.default_rng(3).integers(1, 4, (64, 96)).astype(np.uint8)
    rects = np.array([[0, 0], [20, 30], [40, 70], [50, 5]])
    region = Region(None, slice(0, 64), slice(0, 96), rects, 16, ())  # type: ignore[arg-type]
    want = np.full(labels.shape, NODATA_LABEL, dtype=np.int64)
    for r, c in rects:
        want[r : r + 16, c : c + 16] = labels[r : r + 16, c : c + 16]
    rows, cols = chunks
    split = tuple(tuple(min(n, t - k) for k in range(0, t, n)) for n, t in ((rows, 64), (cols, 96)))
    got = _masked_truth(labels, split, region).compute()
    np.testing.assert_array_equal(got, want)
