"""Quick looks: a class map with its colours and legend, and a stretched RGB composite.

Both read a decimated view (at most ``max_pixels``), so they are cheap on any scene size.
matplotlib is imported only here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from ._deps import import_optional
from .io._labels import as_label_raster, classes_from_attrs
from .model._package import ClassInfo, hex_to_rgb

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def plot_labels(
    labels: xr.DataArray,
    *,
    classes: Sequence[ClassInfo] | None = None,
    ax: Axes | None = None,
    max_pixels: int = 2_000_000,
    legend: bool = True,
    title: str | None = None,
) -> Axes:
    """Draw a ``(y, x)`` label map in its classes' colours, with a legend; nodata transparent."""
    import_optional("matplotlib", "plot_labels")
    from matplotlib.patches import Patch

    labels = as_label_raster(labels)
    if classes is None:
        found = classes_from_attrs(labels.attrs)
        classes = [ClassInfo(i, n, c or "#808080") for i, n, c in found]
    values = _decimated(labels, max_pixels)
    rgba = np.zeros((*values.shape, 4), dtype=np.uint8)
    for c in classes:
        rgba[values == c.id] = (*hex_to_rgb(c.color), 255)
    ax = _show(rgba, ax, title)
    if legend and classes:
        handles = [Patch(facecolor=c.color, edgecolor="black", label=c.name) for c in classes]
        ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return ax


def plot_rgb(
    image: xr.DataArray,
    *,
    bands: Sequence[Any] | None = None,
    percentiles: tuple[float, float] = (2.0, 98.0),
    ax: Axes | None = None,
    max_pixels: int = 2_000_000,
    title: str | None = None,
) -> Axes:
    """Draw three bands (default ``red, green, blue`` by name, else the first three),
    each stretched between its percentiles."""

    if bands is None:
        names = [str(b) for b in image.band.values]
        bands = ["red", "green", "blue"] if {"red", "green", "blue"} <= set(names) else None
    view = image.sel(band=list(bands)) if bands is not None else image.isel(band=slice(0, 3))
    rgb = np.stack([_decimated(view[i], max_pixels) for i in range(view.sizes["band"])], -1)
    rgb = rgb.astype(np.float64)
    nodata = image.rio.nodata
    valid = np.isfinite(rgb).all(-1)
    if nodata is not None:
        valid &= ~(rgb == nodata).any(-1)
    out = np.zeros_like(rgb)
    for b in range(rgb.shape[-1]):
        lo, hi = np.percentile(rgb[..., b][valid], percentiles) if valid.any() else (0.0, 1.0)
        out[..., b] = np.clip((rgb[..., b] - lo) / max(hi - lo, 1e-12), 0, 1)
    out[~valid] = 1.0
    return _show(out, ax, title)


def _show(pixels: np.ndarray, ax: Axes | None, title: str | None) -> Axes:
    """Pixels as an image without axes, on ``ax`` or a new 7 x 7 in figure."""
    plt = import_optional("matplotlib.pyplot", "plots")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 7))
    ax.imshow(pixels, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def _decimated(arr: xr.DataArray, max_pixels: int) -> np.ndarray:
    h, w = arr.shape[-2:]
    step = max(1, int(np.ceil(np.sqrt(h * w / max_pixels))))
    return np.asarray(arr[..., ::step, ::step].values)
