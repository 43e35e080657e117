import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xlandcover.prediction._blend import RollingBlend, _argmax_first_axis
from xlandcover.prediction._windows import axis_grid


@settings(max_examples=60, deadline=None)
@given(
    height=st.integers(1, 90),
    width=st.integers(1, 60),
    overlap=st.integers(0, 15),
    batch=st.integers(1, 7),
    seed=st.integers(0, 100),
)
def test_rolling_blend_equals_whole_array_blend(height, width, overlap, batch, seed):
    """Emitting rows as soon as they are final gives what a whole-array accumulator gives."""
    rng = np.random.default_rng(seed)
    rows = axis_grid(height, window=16, overlap=overlap, multiple=8)
    cols = axis_grid(width, window=16, overlap=overlap, multiple=8)
    wy, wx = rows.weights(), cols.weights()
    windows = [(int(y), int(x)) for y in rows.starts for x in cols.starts]
    probs = {w: rng.random((3, rows.window, cols.window), dtype=np.float32) for w in windows}
    acc = np.zeros((3, height + 16, width + 16), np.float32)
    total = np.zeros((height + 16, width + 16), np.float32)
    for (sy, sx), p in probs.items():
        acc[:, sy : sy + rows.window, sx : sx + cols.window] += wy[:, None] * wx[None] * p
        total[sy : sy + rows.window, sx : sx + cols.window] += wy[:, None] * wx[None]
    want = acc[:, :height, :width] / total[:height, :width]

    blend = RollingBlend(3, 0, height, 0, width, wy, wx)
    out = np.full((3, height, width), -1.0, np.float32)
    valid = np.ones((height, width), bool)
    for b in range(0, len(windows), batch):
        for w in windows[b : b + batch]:
            blend.add(*w, probs[w])
        upto = windows[b + batch][0] if b + batch < len(windows) else height
        blend.emit(upto, valid, out, np.arange(3, dtype=np.uint8))
    np.testing.assert_allclose(out, want, rtol=1e-6)
    spans = -(-batch // len(cols.starts)) + 1  # window rows one batch can touch
    assert blend.acc.shape[1] <= rows.window * spans


def test_windows_out_of_order_are_refused():
    blend = RollingBlend(1, 0, 40, 0, 8, np.ones(16, np.float32), np.ones(8, np.float32))
    blend.add(16, 0, np.ones((1, 16, 8), np.float32))
    blend.emit(16, np.ones((40, 8), bool), np.zeros((40, 8), np.uint8), np.array([0], np.uint8))
    with pytest.raises(ValueError, match="arrived after"):
        blend.add(0, 0, np.ones((1, 16, 8), np.float32))


@given(st.integers(1, 6), st.integers(0, 1000))
def test_argmax_first_axis_matches_numpy(n, seed):
    a = np.random.default_rng(seed).integers(0, 4, (n, 7, 9)).astype(np.float32)  # many ties
    np.testing.assert_array_equal(_argmax_first_axis(a), a.argmax(axis=0))
