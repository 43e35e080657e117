"""Which pixels of an image hold data: the one definition shared by predict, chips and metrics."""

from __future__ import annotations

import numpy as np


def valid_mask(block: np.ndarray, nodata: float | None) -> np.ndarray:
    """``(y, x)`` True where a ``(band, y, x)`` block has data in every band.

    A pixel is nodata when any band equals ``nodata`` or is not finite (NaN, inf).
    """
    valid = np.ones(block.shape[1:], dtype=bool)
    if block.dtype.kind == "f":
        valid &= np.isfinite(block).all(axis=0)
    if nodata is not None and not np.isnan(nodata):
        valid &= (block != nodata).all(axis=0)
    return valid
