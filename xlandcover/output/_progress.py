"""Progress of batch jobs: chunks done, throughput in Mpx/s and km2/h, and ETA (tqdm)."""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
import xarray as xr


def mean_pixel_area(labels: xr.DataArray) -> float | None:
    """Mean ground area of a pixel in m2 (geodesic for geographic CRSs), None without a CRS."""
    from ..evaluation._areas import row_area_function

    rows = row_area_function(labels)
    if rows is None:
        return None
    n = labels.sizes["y"]
    sample = np.unique(np.linspace(0, n - 1, min(n, 64)).astype(int))
    return float(np.mean([rows(int(i), 1)[0] for i in sample]))


def rate_text(pixels: int, seconds: float, pixel_area: float | None) -> str:
    """``"1.23 Mpx/s, 4,430 km2/h"`` (the km2/h part only with a pixel area in m2)."""
    seconds = max(seconds, 1e-9)
    text = f"{pixels / 1e6 / seconds:.2f} Mpx/s"
    if pixel_area is not None:
        text += f", {pixels * pixel_area / 1e6 / (seconds / 3600):,.0f} km2/h"
    return text


class ChunkProgress:
    """A tqdm bar over chunks whose postfix shows throughput; tqdm adds the ETA."""

    def __init__(self, total: int, pixel_area: float | None, *, enabled: bool = True) -> None:
        from tqdm.auto import tqdm

        self.pixel_area = pixel_area
        self.pixels = 0
        self.start = time.perf_counter()
        self.bar: Any = tqdm(
            total=total, unit="chunk", desc="predict", file=sys.stderr, disable=not enabled
        )

    def update(self, pixels: int) -> None:
        self.pixels += pixels
        self.bar.set_postfix_str(self.rate(), refresh=False)
        self.bar.update(1)

    def rate(self) -> str:
        return rate_text(self.pixels, time.perf_counter() - self.start, self.pixel_area)

    def close(self) -> None:
        self.bar.close()
