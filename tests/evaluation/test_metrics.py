"""Confusion matrices (numpy and lazy Dask) against scikit-learn, and the Report's scores."""

from __future__ import annotations

import json
import math
import warnings

import dask
import dask.array as da
import matplotlib
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from xlandcover.errors import RasterInputError, UnknownClassError
from xlandcover.evaluation import Report, confusion_matrix

matplotlib.use("Agg")

NODATA = 255
FAST = settings(max_examples=40, deadline=None)


def random_labels(rng, shape, ids, nodata_fraction=0.0):
    out = rng.choice(np.asarray(ids), size=shape).astype(np.int32)
    if nodata_fraction:
        out[rng.random(shape) < nodata_fraction] = NODATA
    return out


def sk_confusion(pred, truth, ids):
    if truth.size == 0:  # sklearn refuses empty input
        return np.zeros((len(ids), len(ids)), dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "a single label was found", even with labels=
        return skm.confusion_matrix(truth.ravel(), pred.ravel(), labels=list(ids))


def chunks_for(draw, size):
    """Irregular chunk sizes summing to ``size``."""
    sizes = []
    left = size
    while left > 0:
        c = draw(st.integers(1, left))
        sizes.append(c)
        left -= c
    return tuple(sizes) or (0,)


class_id_sets = st.lists(st.integers(-5, 254), min_size=1, max_size=6, unique=True)


@st.composite
def labelled_scenes(draw):
    ids = draw(class_id_sets)
    h, w = draw(st.integers(1, 23)), draw(st.integers(1, 23))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    # the prediction uses a subset of the classes, so some rows/columns come out empty
    used = ids[: draw(st.integers(1, len(ids)))]
    pred = random_labels(rng, (h, w), used)
    truth = random_labels(rng, (h, w), ids)
    pred_chunks = (chunks_for(draw, h), chunks_for(draw, w))
    truth_chunks = (chunks_for(draw, h), chunks_for(draw, w))
    return ids, pred, truth, pred_chunks, truth_chunks


# --- confusion matrix --------------------------------------------------------------------------


@FAST
@given(labelled_scenes())
def test_confusion_matches_sklearn_numpy_and_dask(scene):
    ids, pred, truth, pred_chunks, truth_chunks = scene
    expected = sk_confusion(pred, truth, ids)
    assert expected.sum() == pred.size

    got = confusion_matrix(truth=truth, pred=pred, class_ids=ids)
    assert isinstance(got, np.ndarray)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)

    lazy = confusion_matrix(
        truth=da.from_array(truth, chunks=truth_chunks),
        pred=da.from_array(pred, chunks=pred_chunks),
        class_ids=ids,
    )
    assert isinstance(lazy, da.Array)
    assert lazy.shape == (len(ids), len(ids))
    assert lazy.dtype == np.int64
    computed = lazy.compute(scheduler="sync")
    assert computed.dtype == np.int64
    np.testing.assert_array_equal(computed, expected)


@FAST
@given(labelled_scenes(), st.floats(0.0, 0.6))
def test_ignore_index_skips_truth_or_prediction_nodata(scene, fraction):
    ids, pred, truth, pred_chunks, truth_chunks = scene
    rng = np.random.default_rng(len(ids) + pred.size)
    pred = pred.copy()
    truth = truth.copy()
    pred[rng.random(pred.shape) < fraction] = NODATA
    truth[rng.random(truth.shape) < fraction] = NODATA
    keep = (pred != NODATA) & (truth != NODATA)
    expected = sk_confusion(pred[keep], truth[keep], ids)
    assert expected.sum() == keep.sum()

    np.testing.assert_array_equal(
        confusion_matrix(truth=truth, pred=pred, class_ids=ids, ignore_index=NODATA), expected
    )
    lazy = confusion_matrix(
        truth=da.from_array(truth, chunks=truth_chunks),
        pred=da.from_array(pred, chunks=pred_chunks),
        class_ids=ids,
        ignore_index=NODATA,
    )
    np.testing.assert_array_equal(lazy.compute(scheduler="sync"), expected)


def test_class_order_follows_class_ids_not_sorted_order():
    pred = np.array([7, 7, 1, 5, 5, 5])
    truth = np.array([7, 1, 1, 5, 7, 2])
    ids = [7, 1, 5, 2]
    got = confusion_matrix(truth=truth, pred=pred, class_ids=ids)
    # rows truth (7, 1, 5, 2), columns prediction (7, 1, 5, 2)
    expected = np.array(
        [
            [1, 0, 1, 0],
            [1, 1, 0, 0],
            [0, 0, 1, 0],
            [0, 0, 1, 0],
        ]
    )
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got, sk_confusion(pred, truth, ids))


def test_wide_id_range_and_small_dtypes():
    rng = np.random.default_rng(1)
    # ids spread wider than the lookup table: the searchsorted path
    ids = [-(10**9), 3, 70_000, 2**40]
    pred = rng.choice(np.asarray(ids, dtype=np.int64), size=(30, 20))
    truth = rng.choice(np.asarray(ids, dtype=np.int64), size=(30, 20))
    np.testing.assert_array_equal(
        confusion_matrix(truth=truth, pred=pred, class_ids=ids), sk_confusion(pred, truth, ids)
    )
    # int8 with negative ids (the lookup table's offset must not overflow int8)
    ids8 = [-128, -3, 0, 127]
    p8 = rng.choice(np.asarray(ids8, dtype=np.int8), size=(17, 9))
    t8 = rng.choice(np.asarray(ids8, dtype=np.int8), size=(17, 9))
    np.testing.assert_array_equal(
        confusion_matrix(truth=t8, pred=p8, class_ids=ids8), sk_confusion(p8, t8, ids8)
    )


def test_xarray_inputs_and_mixed_backends():
    rng = np.random.default_rng(2)
    ids = [1, 2, 5, 7]
    pred = random_labels(rng, (40, 30), ids)
    truth = random_labels(rng, (40, 30), ids)
    expected = sk_confusion(pred, truth, ids)

    xp = xr.DataArray(pred, dims=("y", "x"))
    xt = xr.DataArray(truth, dims=("y", "x"))
    got = confusion_matrix(truth=xt, pred=xp, class_ids=ids)
    assert isinstance(got, np.ndarray)
    np.testing.assert_array_equal(got, expected)

    # truth with its dimensions in another order is transposed onto the prediction's
    np.testing.assert_array_equal(confusion_matrix(truth=xt.T, pred=xp, class_ids=ids), expected)

    lazy = confusion_matrix(
        truth=xt, pred=xp.chunk({"y": 7, "x": 11}), class_ids=ids
    )  # dask + numpy
    assert isinstance(lazy, da.Array)
    np.testing.assert_array_equal(lazy.compute(scheduler="sync"), expected)


def test_dask_result_is_lazy_and_one_count_matrix_per_chunk():
    rng = np.random.default_rng(3)
    ids = [1, 2, 5]
    pred = random_labels(rng, (50, 40), ids)
    truth = random_labels(rng, (50, 40), ids)
    calls = []

    def spy(block):
        if block.size:
            calls.append(block.shape)
        return block

    dpred = da.from_array(pred, chunks=(10, 20)).map_blocks(spy, dtype=pred.dtype)
    dtruth = da.from_array(truth, chunks=(25, 8))
    cm = confusion_matrix(truth=dtruth, pred=dpred, class_ids=ids)
    assert isinstance(cm, da.Array)
    assert cm.shape == (3, 3)
    assert calls == []  # building the graph ran nothing

    np.testing.assert_array_equal(cm.compute(scheduler="sync"), sk_confusion(pred, truth, ids))
    assert len(calls) == 10  # each of the prediction's 5 x 2 chunks read once

    # the graph holds (K, K) partial sums, never an array of the scene's shape
    graph = dict(cm.__dask_graph__())
    assert len(graph) > 10


def test_memory_is_per_chunk_not_per_scene():
    """Each block's count task sees one (unified) chunk, never the whole scene."""
    seen = []

    def spy(block):
        seen.append(block.size)
        return block

    ids = [0, 1]
    pred = da.zeros((400, 400), dtype=np.uint8, chunks=100).map_blocks(spy, dtype=np.uint8)
    truth = da.ones((400, 400), dtype=np.uint8, chunks=(50, 400))
    cm = confusion_matrix(truth=truth, pred=pred, class_ids=ids).compute(scheduler="sync")
    np.testing.assert_array_equal(cm, [[0, 0], [400 * 400, 0]])
    assert max(seen) <= 100 * 100


# --- errors ------------------------------------------------------------------------------------


def test_unknown_values_raise_numpy():
    pred = np.array([[1, 2], [9, 2]])
    truth = np.array([[1, 2], [2, 42]])
    with pytest.raises(UnknownClassError, match=r"prediction.*\b9\b") as err:
        confusion_matrix(truth=truth, pred=pred, class_ids=[1, 2])
    assert "ignore" in str(err.value)
    assert isinstance(err.value, ValueError)
    with pytest.raises(UnknownClassError, match=r"truth.*\b42\b"):
        confusion_matrix(truth=truth.ravel(), pred=np.array([1, 2, 2, 2]), class_ids=[1, 2])
    # ignore_index is not a class, yet it is not an unknown value
    got = confusion_matrix(
        truth=np.array([1, 2, 255]), pred=np.array([1, 255, 2]), class_ids=[1, 2], ignore_index=255
    )
    np.testing.assert_array_equal(got, [[1, 0], [0, 0]])


def test_unknown_values_listed_up_to_ten():
    truth = np.arange(100, 130)
    pred = np.full(30, 1)
    with pytest.raises(UnknownClassError) as err:
        confusion_matrix(truth=truth, pred=pred, class_ids=[1])
    assert "100, 101, 102, 103, 104, 105, 106, 107, 108, 109 and 20 more" in str(err.value)


def test_unknown_values_raise_dask_on_compute():
    pred = da.from_array(np.array([[1, 2, 3], [1, 1, 1]]), chunks=1)
    truth = da.from_array(np.array([[1, 2, 2], [1, 1, 1]]), chunks=2)
    cm = confusion_matrix(truth=truth, pred=pred, class_ids=[1, 2])  # no error while building
    with pytest.raises(UnknownClassError, match=r"\b3\b"):
        cm.compute(scheduler="sync")


def test_bad_arguments():
    a = np.zeros((3, 4), dtype=np.uint8)
    with pytest.raises(RasterInputError, match="shape"):
        confusion_matrix(truth=np.zeros((4, 3), dtype=np.uint8), pred=a, class_ids=[0])
    with pytest.raises(RasterInputError, match="integer"):
        confusion_matrix(truth=a, pred=a.astype(float), class_ids=[0])
    with pytest.raises(ValueError, match="unique"):
        confusion_matrix(truth=a, pred=a, class_ids=[0, 0])
    with pytest.raises(ValueError, match="ignore_index"):
        confusion_matrix(truth=a, pred=a, class_ids=[0, 255], ignore_index=255)
    with pytest.raises(ValueError, match="non-empty"):
        confusion_matrix(truth=a, pred=a, class_ids=[])


# --- Report ------------------------------------------------------------------------------------


def hand_report():
    # classes 1, 2, 3: class 3 appears in neither truth nor prediction
    truth = np.array([1, 1, 1, 1, 2, 2, 2, 2, 2, 2])
    pred = np.array([1, 1, 1, 2, 2, 2, 2, 2, 1, 1])
    cm = confusion_matrix(truth=truth, pred=pred, class_ids=[1, 2, 3])
    np.testing.assert_array_equal(cm, [[3, 1, 0], [2, 4, 0], [0, 0, 0]])
    return Report.from_confusion(cm, [1, 2, 3], ["water", "forest", "snow"]), pred, truth


def test_report_hand_computed():
    report, _, _ = hand_report()
    # class 1: tp 3, fp 2, fn 1 -> IoU 3/6; class 2: tp 4, fp 1, fn 2 -> IoU 4/7
    np.testing.assert_allclose(report.iou[:2], [3 / 6, 4 / 7])
    assert math.isnan(report.iou[2])
    assert report.miou == pytest.approx((3 / 6 + 4 / 7) / 2)
    np.testing.assert_allclose(report.precision[:2], [3 / 5, 4 / 5])
    np.testing.assert_allclose(report.recall[:2], [3 / 4, 4 / 6])
    np.testing.assert_allclose(report.f1[:2], [6 / 9, 8 / 11])
    assert np.isnan(report.precision[2]) and np.isnan(report.recall[2]) and np.isnan(report.f1[2])
    np.testing.assert_array_equal(report.support, [4, 6, 0])
    assert report.total == 10
    assert report.pixel_accuracy == pytest.approx(0.7)
    # po 0.7, pe = (4*5 + 6*5) / 100 = 0.5 -> kappa 0.4
    assert report.kappa == pytest.approx(0.4)


def test_table_keeps_nan_for_undefined():
    report, _, _ = hand_report()
    table = report.table()
    assert list(table.columns) == ["id", "iou", "precision", "recall", "f1", "support"]
    assert list(table.index) == ["water", "forest", "snow"]
    assert table.loc["forest", "id"] == 2
    assert table.loc["water", "iou"] == pytest.approx(0.5)
    assert table.loc["snow", ["iou", "precision", "recall", "f1"]].isna().all()
    assert table.loc["snow", "support"] == 0

    # predicted but absent from the truth: recall undefined, precision 0, IoU 0 (not NaN)
    r = Report.from_confusion(np.array([[5, 2], [0, 0]]), [0, 1])
    t = r.table()
    assert t.loc["1", "precision"] == 0.0 and math.isnan(t.loc["1", "recall"])
    assert t.loc["1", "iou"] == 0.0 and t.loc["1", "f1"] == 0.0
    # in the truth but never predicted: precision undefined, recall 0
    r = Report.from_confusion(np.array([[5, 0], [2, 0]]), [0, 1])
    assert math.isnan(r.precision[1]) and r.recall[1] == 0.0


@FAST
@given(labelled_scenes())
def test_report_scores_match_sklearn(scene):
    ids, pred, truth, pred_chunks, truth_chunks = scene
    cm = confusion_matrix(
        truth=da.from_array(truth, chunks=truth_chunks),
        pred=da.from_array(pred, chunks=pred_chunks),
        class_ids=ids,
    )
    with dask.config.set(scheduler="sync"):
        report = Report.from_confusion(cm, ids)  # computes the lazy matrix
    y_true, y_pred = truth.ravel(), pred.ravel()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's UndefinedMetricWarning
        p, r, f, s = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=ids, zero_division=np.nan
        )
        jac = skm.jaccard_score(y_true, y_pred, labels=ids, average=None, zero_division=0)
        kappa = skm.cohen_kappa_score(y_true, y_pred, labels=ids)
    np.testing.assert_allclose(report.precision, p, equal_nan=True)
    np.testing.assert_allclose(report.recall, r, equal_nan=True)
    np.testing.assert_array_equal(report.support, s)
    # sklearn's F-score is NaN as soon as precision or recall is; ours only where undefined
    both = ~np.isnan(p) & ~np.isnan(r)
    np.testing.assert_allclose(report.f1[both], f[both])
    present = (report.support + report.confusion.sum(axis=0)) > 0
    np.testing.assert_allclose(report.iou[present], jac[present])
    assert np.isnan(report.iou[~present]).all()
    assert report.miou == pytest.approx(np.mean(jac[present]))
    assert report.pixel_accuracy == pytest.approx(skm.accuracy_score(y_true, y_pred))
    if math.isnan(kappa):
        assert math.isnan(report.kappa)
    else:
        assert report.kappa == pytest.approx(kappa, abs=1e-12)


def test_report_degenerate_cases():
    empty = Report.from_confusion(np.zeros((2, 2), dtype=np.int64), [1, 2])
    assert math.isnan(empty.miou) and math.isnan(empty.pixel_accuracy)
    assert math.isnan(empty.kappa)
    assert empty.summary()["miou"] is None
    one = Report.from_confusion(np.array([[9, 0], [0, 0]]), [1, 2])
    assert one.miou == 1.0 and one.pixel_accuracy == 1.0
    assert math.isnan(one.kappa)  # as sklearn: only one label in common
    with pytest.raises(ValueError, match="2x2"):
        Report.from_confusion(np.zeros((3, 3), dtype=np.int64), [1, 2])
    with pytest.raises(ValueError, match="distinct class names"):
        Report.from_confusion(np.zeros((2, 2), dtype=np.int64), [1, 2], ["a", "a"])
    with pytest.raises(ValueError, match="non-negative"):
        Report.from_confusion(np.array([[1, -1], [0, 0]]), [1, 2])


def test_report_is_frozen_and_read_only():
    report, _, _ = hand_report()
    with pytest.raises(AttributeError):
        report.class_ids = (4, 5, 6)  # type: ignore[misc]
    with pytest.raises(ValueError):
        report.confusion[0, 0] = 100
    assert report.class_names == ("water", "forest", "snow")
    assert Report.from_confusion(np.eye(2, dtype=int), [3, 8]).class_names == ("3", "8")


def test_summary_and_json(tmp_path):
    report, _, _ = hand_report()
    summary = report.summary()
    assert summary["miou"] == pytest.approx((0.5 + 4 / 7) / 2)
    assert summary["pixel_accuracy"] == pytest.approx(0.7)
    assert summary["kappa"] == pytest.approx(0.4)
    assert summary["iou"] == {
        "water": pytest.approx(0.5),
        "forest": pytest.approx(4 / 7),
        "snow": None,
    }

    path = report.to_json(tmp_path / "scores.json")
    doc = json.loads(path.read_text())  # strict JSON: no NaN
    assert doc["class_ids"] == [1, 2, 3]
    assert doc["class_names"] == ["water", "forest", "snow"]
    assert doc["confusion"] == [[3, 1, 0], [2, 4, 0], [0, 0, 0]]
    assert doc["iou"]["snow"] is None
    assert doc["miou"] == pytest.approx(summary["miou"])
    assert "NaN" not in path.read_text()


def test_text_format():
    report, _, _ = hand_report()
    text = str(report)
    assert text == report.format()
    assert "water" in text and "snow" in text
    assert "0.500" in text  # water's IoU
    assert "NaN" in text  # snow's undefined scores
    assert f"{(0.5 + 4 / 7) / 2:.3f}" in text
    assert "kappa" in text and "0.400" in text
    assert "pixel accuracy  0.700" in text


# --- plots -------------------------------------------------------------------------------------


def tick_texts(labels):
    return [t.get_text() for t in labels]


@pytest.mark.parametrize("normalize", [True, False])
def test_plot_confusion(normalize):
    import matplotlib.pyplot as plt

    report, _, _ = hand_report()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no divide-by-zero for the empty 'snow' row
        ax = report.plot_confusion(normalize=normalize)
        ax.figure.canvas.draw()
    try:
        assert tick_texts(ax.get_xticklabels()) == ["water", "forest", "snow"]
        assert tick_texts(ax.get_yticklabels()) == ["water", "forest", "snow"]
        texts = [t.get_text() for t in ax.texts]
        if normalize:
            # rows water (3/4, 1/4, 0) and forest (2/6, 4/6, 0); the empty row has no text
            assert texts == ["0.75", "0.25", "0.00", "0.33", "0.67", "0.00"]
            image = ax.images[0].get_array()
            assert image.mask[2].all()
        else:
            assert texts == ["3", "1", "0", "2", "4", "0", "0", "0", "0"]
        assert len(ax.figure.axes) == 2  # the heat map and its colour bar
    finally:
        plt.close(ax.figure)


def test_plot_per_class_on_given_axes():
    import matplotlib.pyplot as plt

    report = Report.from_confusion(
        np.array([[3, 1, 0], [2, 4, 0], [0, 0, 0]]),
        [1, 2, 3],
        ["water", "forest", "snow"],
        ["#1f78b4", "#33a02c", "#ffffff"],
    )
    fig, ax = plt.subplots()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out = report.plot_per_class(ax=ax)
            fig.canvas.draw()
        assert out is ax
        assert tick_texts(ax.get_xticklabels()) == ["water", "forest", "snow"]
        heights = [p.get_height() for p in ax.patches]
        assert len(heights) == 12  # 4 scores x 3 classes
        # first series: IoU per class, NaN (no bar) for the absent class
        np.testing.assert_allclose(heights[:3], [0.5, 4 / 7, np.nan])
        assert [t.get_text() for t in ax.get_legend().get_texts()] == [
            "IoU",
            "precision",
            "recall",
            "F1",
        ]
    finally:
        plt.close(fig)


def test_import_xlandcover_evaluation_does_not_load_matplotlib():
    import subprocess
    import sys

    code = (
        "import sys, xlandcover.evaluation; "
        "print(any(m == 'matplotlib' or m.startswith('matplotlib.') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
