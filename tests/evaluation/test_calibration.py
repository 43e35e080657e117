"""Temperature fitting, expected calibration error and reliability counts."""

import numpy as np
import pytest

import xlandcover as xlc
from xlandcover.evaluation import (
    ReliabilityCounts,
    evaluate_calibration,
    expected_calibration_error,
    fit_temperature,
    plot_reliability,
    reliability_table,
    softmax,
)
from xlandcover.model import with_temperature

from ..conftest import make_image


def overconfident(n: int = 4000, classes: int = 5, factor: float = 3.0, seed: int = 0):
    """Targets drawn from softmax(z), and logits factor * z: the right temperature is factor."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, (n, classes))
    p = softmax(z)
    targets = (rng.random((n, 1)) > np.cumsum(p, axis=1)).sum(axis=1)
    return factor * z, targets


def test_fit_temperature_recovers_the_overconfidence():
    logits, targets = overconfident(factor=3.0)
    assert fit_temperature(logits, targets) == pytest.approx(3.0, rel=0.06)
    probs = softmax(logits)
    assert fit_temperature(probs, targets, inputs="probabilities") == pytest.approx(3.0, rel=0.06)
    calibrated, _ = overconfident(factor=1.0)
    assert fit_temperature(calibrated, targets) == pytest.approx(1.0, rel=0.06)


def test_segmentation_shaped_torch_input_and_ignored_pixels():
    from xlandcover._torch import torch

    logits, targets = overconfident(n=4096, factor=2.0, seed=1)
    images = torch.from_numpy(logits.reshape(4, 32, 32, 5)).permute(0, 3, 1, 2)  # N, C, H, W
    masks = targets.reshape(4, 32, 32).copy()
    masks[:, :4] = 255
    t = fit_temperature(images, torch.from_numpy(masks), ignore_index=255)
    keep = masks.ravel() != 255
    assert t == pytest.approx(fit_temperature(logits[keep], targets[keep]), rel=1e-4)
    with pytest.raises(ValueError, match=r"outside the class indices 0\.\.4"):
        fit_temperature(images, torch.from_numpy(masks))
    assert fit_temperature(logits, targets, max_pixels=1000, seed=3) == pytest.approx(2.0, rel=0.2)


def test_expected_calibration_error():
    p = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.95, 0.05]])
    y = np.array([0, 1, 0, 1, 0])
    # bins of 0.1: (0.8, 0.9] holds 0.9 (right) ... each confidence alone except 0.9 / 0.95
    want = (abs(1 - 0.9) + abs(0 - 0.8) + abs(1 - 0.6) + abs(1 - 0.7) + abs(1 - 0.95)) / 5
    assert expected_calibration_error(p, y, bins=10) == pytest.approx(want)
    # one bin: |accuracy - mean confidence|
    assert expected_calibration_error(p, y, bins=1) == pytest.approx(abs(0.8 - 0.79))
    table = reliability_table(p, y, bins=10)
    assert table["count"].sum() == 5 and table.loc[8, "accuracy"] == 1.0
    logits, targets = overconfident()
    before = expected_calibration_error(softmax(logits), targets)
    t = fit_temperature(logits, targets)
    after = expected_calibration_error(softmax(logits, temperature=t), targets)
    assert before > 0.1 and after < 0.03


def test_reliability_counts_add_up_over_chunks():
    logits, targets = overconfident(n=3000)
    probs = softmax(logits)
    whole = ReliabilityCounts.of(probs, targets)
    parts = ReliabilityCounts.of(probs[:1000], targets[:1000]) + ReliabilityCounts.of(
        probs[1000:], targets[1000:]
    )
    np.testing.assert_allclose(parts.count, whole.count)
    np.testing.assert_allclose(parts.correct, whole.correct)
    assert parts.ece == pytest.approx(whole.ece)
    assert np.isnan(ReliabilityCounts(15).ece)


def test_reliability_diagram():
    import matplotlib

    matplotlib.use("Agg")
    logits, targets = overconfident()
    ax = plot_reliability(
        ReliabilityCounts.of(softmax(logits), targets),
        reliability_table(softmax(logits, temperature=3.0), targets),
        labels=("raw", "T = 3"),
    )
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[0] == "calibrated" and legend[1].startswith("raw (ECE 0.")
    assert len(ax.lines) == 3


def test_evaluate_calibration_of_a_map(tiny_package):
    img = make_image(120, 140, seed=6).chunk({"y": 64, "x": 70})
    probs = xlc.predict(img, tiny_package, output="probabilities").values
    truth = xlc.predict(img, tiny_package).values.copy()
    truth[::3] = 7  # the reference disagrees on a third of the rows
    truth[:5] = 255  # unlabelled
    reference = xlc.predict(img, tiny_package).copy(data=truth).rio.write_nodata(255)
    cal = evaluate_calibration(img, reference, tiny_package, bins=10)
    ids = np.array([1, 2, 5, 7])
    index = np.searchsorted(ids, np.where(truth == 255, 1, truth))
    index[truth == 255] = -1
    want = ReliabilityCounts.of(probs[None], index[None], bins=10, ignore_index=-1)
    np.testing.assert_allclose(cal.before.count, want.count)
    assert cal.ece_before == pytest.approx(want.ece) and cal.ece_after == cal.ece_before
    hot = with_temperature(tiny_package, 2.5)
    cal2 = evaluate_calibration(img, reference, hot, bins=10)
    assert cal2.temperature == 2.5 and cal2.ece_before == pytest.approx(want.ece)
    assert cal2.ece_after != pytest.approx(cal2.ece_before)
    assert "temperature 2.500" in str(cal2) and cal2.summary()["ece_after"] == cal2.ece_after
