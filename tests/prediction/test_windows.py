import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from xlandcover.prediction._windows import WEIGHT_FLOOR, AxisGrid, axis_grid, nearest_valid_window


@given(
    length=st.integers(1, 3000),
    window=st.sampled_from([32, 64, 96, 256, 512]),
    frac=st.floats(0, 0.9),
)
def test_windows_cover_the_axis_and_stay_inside(length, window, frac):
    overlap = int(window * frac)
    grid = axis_grid(length, window=window, overlap=overlap, multiple=32)
    starts = grid.starts
    assert starts[0] == 0
    assert np.all(np.diff(starts) > 0)
    assert np.all(np.diff(starts) <= grid.stride)
    if length >= window:
        assert grid.window == window
        assert starts[-1] + window == length  # last window ends at the scene's edge
        assert np.all(starts + window <= length)  # no window leaves the scene
    else:  # one window, the axis rounded up to the model's multiple
        assert len(starts) == 1 and grid.window % 32 == 0 and 0 <= grid.window - length < 32
    covered = np.zeros(length, dtype=int)
    for s in starts:
        covered[s : s + grid.window] += 1
    assert covered.min() >= 1


@given(
    length=st.integers(1, 2000),
    window=st.sampled_from([32, 64, 128]),
    overlap=st.integers(0, 31),
    a=st.integers(0, 1999),
    n=st.integers(1, 500),
)
def test_touching_selects_exactly_the_intersecting_windows(length, window, overlap, a, n):
    grid = axis_grid(length, window=window, overlap=overlap, multiple=32)
    a = min(a, length - 1)
    b = min(length, a + n)
    got = set(grid.touching(a, b).tolist())
    want = {int(s) for s in grid.starts if s < b and s + grid.window > a}
    assert got == want
    # the pixels every touching window reads lie within one halo of the interval: what a chunk
    # holds (on an axis shorter than the window, the window reads the whole axis, then pads)
    assert all(s >= a - grid.halo and min(s + grid.window, length) <= b + grid.halo for s in got)


@pytest.mark.parametrize("window", [1, 7, 32, 64, 255, 512])
def test_weights_are_positive_smooth_and_symmetric(window):
    w = AxisGrid(length=1000, window=window, stride=window).weights()
    assert w.shape == (window,)
    assert w.min() >= WEIGHT_FLOOR * 0.999 and w.max() <= 1.0
    np.testing.assert_allclose(w, w[::-1], rtol=1e-6)
    if window >= 32:
        assert w[window // 2] > 0.99 and w[0] < 0.01  # peaks in the centre, fades at the edge
        assert np.abs(np.diff(w)).max() < 4.0 / window  # no jumps: smooth


@given(length=st.integers(64, 1500), overlap=st.integers(0, 63))
def test_normalised_blend_weights_sum_to_one(length, overlap):
    grid = axis_grid(length, window=64, overlap=overlap, multiple=32)
    w = grid.weights().astype(np.float64)
    total = np.zeros(length)
    parts = []
    for s in grid.starts:
        part = np.zeros(length)
        part[s : s + 64] = w
        parts.append(part)
        total += part
    assert total.min() > 0
    np.testing.assert_allclose(sum(p / total for p in parts), 1.0, rtol=1e-12)


def test_invalid_grid_raises():
    with pytest.raises(ValueError):
        AxisGrid(length=10, window=8, stride=9)


@pytest.mark.parametrize(
    ("window", "multiple", "want"), [(500, 32, 512), (490, 32, 480), (10, 32, 32), (48, 32, 64)]
)
def test_nearest_valid_window(window, multiple, want):
    assert nearest_valid_window(window, multiple) == want
