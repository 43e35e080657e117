"""The ``DataArray.landcover`` accessor: validates nothing itself, forwards everything.

Each method has the name, the signature (without the array, which is the accessor's) and the
docstring of the function it calls: ``img.landcover.predict(model, window=256)`` is
``xlandcover.predict(img, model, window=256)``.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, cast, overload

import xarray as xr

from ._compat import warn_deprecated

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd
    from matplotlib.axes import Axes

    from .model._package import ClassInfo, ModelPackage
    from .model._runtime import Precision
    from .prediction._aoi import AreaOfInterest
    from .prediction._predict import TTA, MatchBands
    from .prediction._sieve import Connectivity
    from .prediction._uncertainty import Dtype, Layer


@xr.register_dataarray_accessor("landcover")
class LandcoverAccessor:
    """Land-cover operations on a DataArray: ``img.landcover.predict(model)`` on imagery;
    ``labels.landcover.sieve(min_size)``, ``.to_cog(path)``, ``.to_zarr(store)``,
    ``.class_areas()`` and ``.plot_labels()`` on label maps; ``img.landcover.plot_rgb()``."""

    def __init__(self, obj: xr.DataArray) -> None:
        self._obj = obj

    @overload
    def predict(
        self,
        model: ModelPackage | str | os.PathLike[str],
        *,
        window: int | None = None,
        overlap: int | float | None = None,
        batch_size: int | None = None,
        output: Layer = "labels",
        device: str = "auto",
        tta: bool | TTA = False,
        chunks: int | Literal["auto"] | None = "auto",
        allow_rechunk: bool = True,
        dtype: Dtype | None = None,
        temperature: float | None = None,
        match_bands: MatchBands = "name",
        precision: Precision = "auto",
        aoi: AreaOfInterest | None = None,
    ) -> xr.DataArray: ...

    @overload
    def predict(
        self,
        model: ModelPackage | str | os.PathLike[str],
        *,
        window: int | None = None,
        overlap: int | float | None = None,
        batch_size: int | None = None,
        output: tuple[Layer, ...] | list[Layer],
        device: str = "auto",
        tta: bool | TTA = False,
        chunks: int | Literal["auto"] | None = "auto",
        allow_rechunk: bool = True,
        dtype: Dtype | None = None,
        temperature: float | None = None,
        match_bands: MatchBands = "name",
        precision: Precision = "auto",
        aoi: AreaOfInterest | None = None,
    ) -> xr.Dataset: ...

    def predict(
        self,
        model: ModelPackage | str | os.PathLike[str],
        *,
        window: int | None = None,
        overlap: int | float | None = None,
        batch_size: int | None = None,
        output: Layer | tuple[Layer, ...] | list[Layer] = "labels",
        device: str = "auto",
        tta: bool | TTA = False,
        chunks: int | Literal["auto"] | None = "auto",
        allow_rechunk: bool = True,
        dtype: Dtype | None = None,
        temperature: float | None = None,
        match_bands: MatchBands = "name",
        precision: Precision = "auto",
        aoi: AreaOfInterest | None = None,
    ) -> xr.DataArray | xr.Dataset:
        """Lazy land-cover prediction of this image: :func:`xlandcover.predict`."""
        from .prediction._predict import predict as _predict

        predict: Callable[..., xr.DataArray | xr.Dataset] = _predict  # one call for all outputs
        return predict(self._obj, model, window=window, overlap=overlap, batch_size=batch_size,
                       output=output, device=device, tta=tta, chunks=chunks,
                       allow_rechunk=allow_rechunk, dtype=dtype, temperature=temperature,
                       match_bands=match_bands, precision=precision, aoi=aoi)  # fmt: skip

    def sieve(
        self,
        min_size: int,
        *,
        connectivity: Connectivity = 4,
        nodata: int | None = None,
        allow_rechunk: bool = True,
    ) -> xr.DataArray:
        """Merge patches under ``min_size`` pixels: :func:`xlandcover.prediction.sieve`."""
        from .prediction._sieve import sieve

        return sieve(self._obj, min_size, connectivity=connectivity, nodata=nodata,
                     allow_rechunk=allow_rechunk)  # fmt: skip

    def to_zarr(self, store: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Stream this prediction to a Zarr v3 store: :func:`xlandcover.to_zarr`."""
        from .output._write import to_zarr

        return to_zarr(self._obj, store, overwrite=overwrite)

    def to_cog(
        self, path: str | os.PathLike[str], *, overwrite: bool = False, job: str | None = None
    ) -> Path:
        """Stream this prediction to a Cloud-Optimized GeoTIFF: :func:`xlandcover.to_cog`."""
        from .output._write import to_cog

        return to_cog(self._obj, path, overwrite=overwrite, job=job)

    def class_areas(
        self,
        *,
        class_ids: Sequence[int] | None = None,
        class_names: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Pixels, hectares, km2 and share per class:
        :func:`xlandcover.evaluation.class_areas`."""
        from .evaluation._areas import class_areas

        return class_areas(self._obj, class_ids=class_ids, class_names=class_names)

    def plot_labels(
        self,
        *,
        classes: Sequence[ClassInfo] | None = None,
        ax: Axes | None = None,
        max_pixels: int = 2_000_000,
        legend: bool = True,
        title: str | None = None,
    ) -> Axes:
        """Class map in its colours with a legend: :func:`xlandcover.plot.plot_labels`."""
        from .plot import plot_labels

        return plot_labels(self._obj, classes=classes, ax=ax, max_pixels=max_pixels,
                           legend=legend, title=title)  # fmt: skip

    def plot_rgb(
        self,
        *,
        bands: Sequence[Any] | None = None,
        percentiles: tuple[float, float] = (2.0, 98.0),
        ax: Axes | None = None,
        max_pixels: int = 2_000_000,
        title: str | None = None,
    ) -> Axes:
        """Percentile-stretched RGB of an image: :func:`xlandcover.plot.plot_rgb`."""
        from .plot import plot_rgb

        return plot_rgb(self._obj, bands=bands, percentiles=percentiles, ax=ax,
                        max_pixels=max_pixels, title=title)  # fmt: skip

    def area(self, **kwargs: Any) -> pd.DataFrame:
        """Deprecated name of :meth:`class_areas`."""
        warn_deprecated(".landcover.area() is now .landcover.class_areas()")
        return self.class_areas(**kwargs)

    def plot(self, **kwargs: Any) -> Axes:
        """Deprecated name of :meth:`plot_labels`."""
        warn_deprecated(".landcover.plot() is now .landcover.plot_labels()")
        return self.plot_labels(**kwargs)


#: Accessor method -> the function it forwards to (its public path).
FORWARDS: dict[str, str] = {
    "predict": "xlandcover.predict",
    "sieve": "xlandcover.prediction.sieve",
    "to_zarr": "xlandcover.to_zarr",
    "to_cog": "xlandcover.to_cog",
    "class_areas": "xlandcover.evaluation.class_areas",
    "plot_labels": "xlandcover.plot.plot_labels",
    "plot_rgb": "xlandcover.plot.plot_rgb",
}


def forwarded(method: str) -> Callable[..., Any]:
    """The function the accessor's ``method`` calls."""
    module, _, name = FORWARDS[method].rpartition(".")
    return cast(Callable[..., Any], getattr(importlib.import_module(module), name))


def forwarded_doc(method: str) -> str:
    """The docstring of the function behind ``method`` without the entry of its array
    argument (which is the accessor's), headed by how the two calls correspond."""
    func = forwarded(method)
    first = next(iter(inspect.signature(func).parameters))
    out: list[str] = []
    skipping, indent = False, -1
    for line in (func.__doc__ or "").splitlines():
        stripped = line.strip()
        if indent < 0 and re.fullmatch(rf"{first}(, \w+)*", stripped):
            indent = len(line) - len(line.lstrip())
            rest = stripped.split(", ")[1:]
            if rest:  # "image, labels": keep the others
                out.append(" " * indent + ", ".join(rest))
            else:
                skipping = True
            continue
        if skipping and (not stripped or len(line) - len(line.lstrip()) > indent):
            continue
        skipping = False
        out.append(line)
    head = f"``obj.landcover.{method}(...)`` is ``{FORWARDS[method]}(obj, ...)``.\n\n"
    return head + "\n".join(out)


def forward_docstrings() -> None:
    """Give each accessor method the docstring of its function (``help()``, Jupyter's ``?``;
    the API reference shows the short ones with the link)."""
    for method in FORWARDS:
        getattr(LandcoverAccessor, method).__doc__ = forwarded_doc(method)
