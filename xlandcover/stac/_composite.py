"""Lazy temporal composites of a ``(time, band, y, x)`` stack with NaN as nodata."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import xarray as xr

from ..errors import StacQueryError

Composite = Callable[[xr.DataArray], xr.DataArray]


def composite(stack: xr.DataArray, how: str) -> xr.DataArray:
    """Reduce ``time`` lazily with the composite called ``how`` (see :data:`COMPOSITES`).

    ``"median"``: the per-pixel median of the valid (non-NaN) observations; all time steps of
    a chunk are read together. ``"first"``: per pixel, the first valid observation in the
    stack's order (least cloudy or newest first, as ``load_stac`` orders it); reads one time
    step at a time, so memory does not grow with the number of items. Pixels with no valid
    observation are NaN.
    """
    reduce = COMPOSITES.get(how)
    if reduce is None:
        raise StacQueryError(f"unknown composite {how!r}; use one of {sorted(COMPOSITES)} or None")
    return reduce(stack)


def register_composite(name: str, reduce: Composite, *, replace: bool = False) -> None:
    """Make ``reduce`` available as ``load_stac(composite=name)`` (and in presets): it turns
    a lazy ``(time, band, y, x)`` stack with NaN as nodata into ``(band, y, x)``, lazily."""
    if name in COMPOSITES and not replace:
        raise StacQueryError(f"a composite named {name!r} exists; pass replace=True")
    COMPOSITES[name] = reduce


def _median(stack: xr.DataArray) -> xr.DataArray:
    if stack.sizes["time"] == 1:
        return stack.isel(time=0, drop=True)
    stack = stack.chunk({"time": -1}) if stack.chunks is not None else stack
    return xr.apply_ufunc(
        _nanmedian,
        stack,
        input_core_dims=[["time"]],
        dask="parallelized",
        output_dtypes=[stack.dtype],
        keep_attrs=True,
    )


def _nanmedian(values: np.ndarray) -> np.ndarray:
    # all-NaN pixels are filled before and set NaN after, instead of silencing numpy's
    # warning (warning filters are process-global, not safe in Dask's threads)
    empty = np.isnan(values).all(axis=-1)
    if empty.any():
        values = np.where(empty[..., None], 0, values)
    out = np.nanmedian(values, axis=-1).astype(values.dtype, copy=False)
    out[empty] = np.nan
    return out


def _first(stack: xr.DataArray) -> xr.DataArray:
    out = stack.isel(time=0, drop=True)
    for t in range(1, stack.sizes["time"]):
        out = out.fillna(stack.isel(time=t, drop=True))
    return out


#: Temporal composites by name (``load_stac(composite=...)``); :func:`register_composite` adds.
COMPOSITES: dict[str, Composite] = {"median": _median, "first": _first}
