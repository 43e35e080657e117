"""The ``DataArray.landcover`` accessor: validates nothing itself, delegates everything."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import xarray as xr

if TYPE_CHECKING:
    from pathlib import Path

    from .package import ModelPackage


@xr.register_dataarray_accessor("landcover")
class LandcoverAccessor:
    """Land-cover operations on a DataArray: ``img.landcover.predict(model)`` on imagery,
    ``labels.landcover.to_cog(path)`` / ``to_zarr(store)`` on predictions."""

    def __init__(self, obj: xr.DataArray) -> None:
        self._obj = obj

    def predict(self, model: ModelPackage | str | os.PathLike[str], **kwargs: Any) -> xr.DataArray:
        """Lazy land-cover prediction; see :func:`xlandcover.predict`."""
        from .predict import predict

        return predict(self._obj, model, **kwargs)

    def to_zarr(self, store: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Stream this prediction to a Zarr v3 store; see :func:`xlandcover.to_zarr`."""
        from .write import to_zarr

        return to_zarr(self._obj, store, overwrite=overwrite)

    def to_cog(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Stream this prediction to a Cloud-Optimized GeoTIFF; see :func:`xlandcover.to_cog`."""
        from .write import to_cog

        return to_cog(self._obj, path, overwrite=overwrite)
