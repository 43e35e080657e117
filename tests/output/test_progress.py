import numpy as np
import pytest
import rioxarray  # noqa: F401
import xarray as xr

from xlandcover.output import ChunkProgress, mean_pixel_area, rate_text


def _labels(crs, res, y0=0.0, n=10):
    da = xr.DataArray(
        np.zeros((n, n), np.uint8),
        dims=("y", "x"),
        coords={"y": y0 - res * (np.arange(n) + 0.5), "x": res * (np.arange(n) + 0.5)},
    )
    return da if crs is None else da.rio.write_crs(crs)


def test_rate_text_in_mpx_and_km2_per_hour():
    # 1e6 pixels of 30 m x 30 m in an hour: 900 km2/h
    assert rate_text(1_000_000, 3600.0, 900.0) == "0.00 Mpx/s, 900 km2/h"
    assert rate_text(5_000_000, 2.0, 1.0) == "2.50 Mpx/s, 9,000 km2/h"
    assert rate_text(5_000_000, 2.0, None) == "2.50 Mpx/s"


def test_mean_pixel_area():
    assert mean_pixel_area(_labels("EPSG:32633", 10.0)) == pytest.approx(100.0)
    assert mean_pixel_area(_labels(None, 1.0)) is None
    # 0.001 degree pixels at the equator: about 111.3 m x 110.6 m
    area = mean_pixel_area(_labels("EPSG:4326", 0.001, y0=0.005))
    assert area == pytest.approx(111.32 * 110.57, rel=2e-3)


def test_chunk_progress_counts_pixels():
    bar = ChunkProgress(3, 100.0, enabled=False)
    bar.update(1000)
    bar.update(500)
    assert bar.pixels == 1500
    assert "Mpx/s" in bar.rate() and "km2/h" in bar.rate()
    bar.close()
