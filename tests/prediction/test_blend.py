import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xlandcover._torch import torch
from xlandcover.prediction._blend import RollingBlend, labels_of
from xlandcover.prediction._windows import axis_grid


def test_labels_on_host_and_by_torch_agree_and_ties_go_to_the_first_class():
    rng = np.random.default_rng(0)
    acc = torch.from_numpy(rng.integers(0, 4, (6, 37, 41)).astype(np.float32))  # many ties
    lut = torch.tensor([3, 1, 4, 1, 5, 9], dtype=torch.uint8)
    want = lut.numpy()[acc.numpy().argmax(axis=0)]
    for on_host in (True, False):
        np.testing.assert_array_equal(labels_of(acc, lut, on_host=on_host).numpy(), want)


class _Rows:
    """A sink stand-in that records emitted rows."""

    def __init__(self, shape):
        self.out = np.full(shape, np.nan, np.float32)

    def put(self, lo, rows):
        self.out[:, lo : lo + rows.shape[1]] = rows.numpy()


@settings(max_examples=60, deadline=None)
@given(
    height=st.integers(1, 90),
    width=st.integers(1, 60),
    overlap=st.integers(0, 15),
    offset=st.integers(0, 30),
    seed=st.integers(0, 100),
)
def test_device_blend_equals_whole_array_blend_and_holds_one_window(
    height, width, overlap, offset, seed
):
    """Emitting rows as soon as the next window starts below them gives what a whole-array
    accumulator gives, on any interior, with buffers never taller than one window."""
    rng = np.random.default_rng(seed)
    rows = axis_grid(height + offset, window=16, overlap=overlap, multiple=8)
    cols = axis_grid(width, window=16, overlap=overlap, multiple=8)
    wy, wx = rows.weights(), cols.weights()
    windows = [
        (int(y), int(x)) for y in rows.touching(offset, offset + height) for x in cols.starts
    ]
    probs = {w: rng.random((3, rows.window, cols.window), dtype=np.float32) for w in windows}
    acc = np.zeros((3, height + offset + 16, width + 16), np.float32)
    total = np.zeros((height + offset + 16, width + 16), np.float32)
    for (sy, sx), p in probs.items():
        acc[:, sy : sy + rows.window, sx : sx + cols.window] += wy[:, None] * wx[None] * p
        total[sy : sy + rows.window, sx : sx + cols.window] += wy[:, None] * wx[None]
    want = acc[:, offset : offset + height, :width] / total[offset : offset + height, :width]

    sink = _Rows((3, height, width))
    blend = RollingBlend(
        3,
        (offset, offset + height, 0, width),
        wy,
        wx,
        torch.device("cpu"),
        class_ids=None,
        sink=sink,
        host_argmax=True,
    )
    for sy, sx in windows:
        blend.emit(sy)
        blend.add(sy, sx, torch.from_numpy(probs[(sy, sx)]))
        assert blend.acc.shape[1] <= rows.window
    blend.emit(offset + height)
    np.testing.assert_allclose(sink.out, want, rtol=1e-6)


def test_windows_out_of_order_are_refused():
    sink = _Rows((1, 40, 8))
    blend = RollingBlend(
        1,
        (0, 40, 0, 8),
        np.ones(16, np.float32),
        np.ones(8, np.float32),
        torch.device("cpu"),
        class_ids=None,
        sink=sink,
        host_argmax=True,
    )
    blend.emit(16)
    blend.add(16, 0, torch.ones((1, 16, 8)))
    blend.emit(32)
    with pytest.raises(ValueError, match="out of order"):
        blend.add(0, 0, torch.ones((1, 16, 8)))
