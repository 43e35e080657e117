"""The ``DataArray.landcover`` accessor: validates nothing itself, delegates everything."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import xarray as xr

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd
    from matplotlib.axes import Axes

    from .model._package import ModelPackage


@xr.register_dataarray_accessor("landcover")
class LandcoverAccessor:
    """Land-cover operations on a DataArray: ``img.landcover.predict(model)`` on imagery,
    ``labels.landcover.to_cog(path)`` / ``to_zarr(store)`` on predictions."""

    def __init__(self, obj: xr.DataArray) -> None:
        self._obj = obj

    def predict(self, model: ModelPackage | str | os.PathLike[str], **kwargs: Any) -> xr.DataArray:
        """Lazy land-cover prediction; see :func:`xlandcover.predict` (a Dataset when
        ``output`` is a tuple of layers)."""
        from .prediction._predict import predict

        return predict(self._obj, model, **kwargs)

    def sieve(self, min_size: int, **kwargs: Any) -> xr.DataArray:
        """Merge patches under ``min_size`` pixels; see :func:`xlandcover.prediction.sieve`."""
        from .prediction._sieve import sieve

        return sieve(self._obj, min_size, **kwargs)

    def to_zarr(self, store: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Stream this prediction to a Zarr v3 store; see :func:`xlandcover.to_zarr`."""
        from .output._write import to_zarr

        return to_zarr(self._obj, store, overwrite=overwrite)

    def to_cog(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Stream this prediction to a Cloud-Optimized GeoTIFF; see :func:`xlandcover.to_cog`."""
        from .output._write import to_cog

        return to_cog(self._obj, path, overwrite=overwrite)

    def area(self, **kwargs: Any) -> pd.DataFrame:
        """Pixels, hectares, km2 and share per class; see
        :func:`xlandcover.evaluation.class_areas`."""
        from .evaluation._areas import class_areas

        return class_areas(self._obj, **kwargs)

    def plot(self, **kwargs: Any) -> Axes:
        """Class map in its colours with a legend; see :func:`xlandcover.plot.plot_labels`."""
        from .plot import plot_labels

        return plot_labels(self._obj, **kwargs)

    def plot_rgb(self, **kwargs: Any) -> Axes:
        """Percentile-stretched RGB of an image; see :func:`xlandcover.plot.plot_rgb`."""
        from .plot import plot_rgb

        return plot_rgb(self._obj, **kwargs)
