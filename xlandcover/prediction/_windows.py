"""Pure index arithmetic of the sliding window: the scene-anchored grid and blending weights.

The window grid depends only on the scene's shape, never on how the scene is chunked: on each
axis, windows start at ``0, S, 2S, ...`` (``S`` the stride) and the last one is moved back so it
ends exactly at the scene's edge. Every window lies inside the scene, so no window ever sees
padding, except on an axis shorter than the window, where the one window is the axis rounded up
to the model's size multiple and padded by reflection.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InvalidWindowError

#: Weight given to a window's outermost pixels relative to its centre; it keeps every pixel's
#: weight strictly positive, so pixels at the scene's edge (seen by one window) are defined.
WEIGHT_FLOOR = 1e-3


@dataclass(frozen=True)
class AxisGrid:
    """The sliding-window grid along one axis of a scene.

    Attributes
    ----------
    length : int
        Number of pixels of the scene along the axis.
    window : int
        Window size along the axis (the model's input size).
    stride : int
        Distance between consecutive window starts.
    """

    length: int
    window: int
    stride: int

    def __post_init__(self) -> None:
        if self.length < 1 or self.window < 1 or not 1 <= self.stride <= self.window:
            raise InvalidWindowError(f"invalid window grid {self}")

    @property
    def starts(self) -> np.ndarray:
        """Start of every window, ascending; windows shorter than the axis end inside it."""
        if self.length <= self.window:
            return np.zeros(1, dtype=np.int64)
        n = -(-(self.length - self.window) // self.stride) + 1
        starts = np.arange(n, dtype=np.int64) * self.stride
        starts[-1] = self.length - self.window
        return starts

    @property
    def halo(self) -> int:
        """Pixels a chunk must borrow from each neighbour to hold every window touching it."""
        return min(self.window, self.length) - 1

    def touching(self, start: int, stop: int) -> np.ndarray:
        """Starts of the windows that intersect the interval ``[start, stop)``."""
        s = self.starts
        return s[(s < stop) & (s + self.window > start)]

    def weights(self) -> np.ndarray:
        """Smooth blending weights over one window: squared sine (Hann) plus a positive floor."""
        i = np.arange(self.window, dtype=np.float64)
        hann = np.sin(np.pi * (i + 0.5) / self.window) ** 2
        return (WEIGHT_FLOOR + (1.0 - WEIGHT_FLOOR) * hann).astype(np.float32)


def axis_grid(length: int, *, window: int, overlap: int, multiple: int) -> AxisGrid:
    """The grid for one axis; an axis shorter than the window gets one window rounded up to
    ``multiple`` (the model's required size multiple) instead of the full window."""
    if length < window:
        window = -(-length // multiple) * multiple
        return AxisGrid(length=length, window=window, stride=window)
    return AxisGrid(length=length, window=window, stride=window - overlap)


def nearest_valid_window(window: int, multiple: int) -> int:
    """The positive multiple of ``multiple`` closest to ``window`` (ties go up)."""
    below = max(multiple, window // multiple * multiple)
    above = -(-window // multiple) * multiple
    return below if window - below < above - window else above
