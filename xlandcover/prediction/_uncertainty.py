"""Per-pixel uncertainty layers from the blended class probabilities of ``predict``.

``predict(..., output="confidence" | "margin" | "entropy")`` and
``output="probabilities", dtype="uint8"`` run the model once for the probabilities and convert
them chunk by chunk, so the layers are as independent of the chunking as the probabilities.
Several layers (``output=("labels", "confidence")``) come as one Dataset from one model run.

Layers in ``[0, 1]`` are stored as uint8: ``round(254 * value)``, so 254 is 1.0 and 255 is
nodata (the image's nodata pixels). :func:`dequantize` turns them back into floats with NaN.

* ``confidence``: the largest class probability (the probability of the mapped class).
* ``margin``: largest minus second-largest probability (0: a tie between two classes).
* ``entropy``: Shannon entropy of the class probabilities divided by ``log(K)`` (0: certain,
  1: all ``K`` classes equally likely).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import dask.array as da
import numpy as np
import xarray as xr

from ..errors import PredictSettingsError
from ..model._package import NODATA_LABEL

Layer = Literal["labels", "probabilities", "confidence", "margin", "entropy"]
LAYERS: tuple[str, ...] = ("labels", "probabilities", "confidence", "margin", "entropy")
Dtype = Literal["float32", "uint8"]

#: uint8 layers store ``round(SCALE * value)``; ``NODATA`` marks nodata pixels.
SCALE = 254
NODATA = 255

_LONG_NAMES = {
    "confidence": "probability of the mapped class",
    "margin": "margin between the two most probable classes",
    "entropy": "normalised entropy of the class probabilities",
}


def resolve_output(output: Any, dtype: Any) -> tuple[str, ...] | None:
    """The layers ``output`` asks for, or None when it is plain labels or float probabilities
    (computed directly by ``predict``); raises :class:`PredictSettingsError` on unknown names."""
    names = (output,) if isinstance(output, str) else tuple(output)
    unknown = [n for n in names if n not in LAYERS]
    if not names or unknown or len(set(names)) != len(names):
        raise PredictSettingsError(
            f"output must be one of {list(LAYERS)} or a tuple of distinct ones, not {output!r}"
        )
    if dtype not in (None, "float32", "uint8"):
        raise PredictSettingsError(
            f"dtype must be 'float32' or 'uint8' (probabilities), not {dtype!r}"
        )
    if isinstance(output, str) and output in ("labels", "probabilities") and dtype != "uint8":
        return None
    return names


def confidence(probs: np.ndarray) -> np.ndarray:
    """Largest probability along the first (class) axis."""
    return probs.max(axis=0)


def margin(probs: np.ndarray) -> np.ndarray:
    """Largest minus second-largest probability along the first axis (1 with one class)."""
    if probs.shape[0] == 1:
        return np.ones(probs.shape[1:], dtype=probs.dtype)
    top = np.partition(probs, probs.shape[0] - 2, axis=0)[-2:]
    return top[1] - top[0]


def entropy(probs: np.ndarray) -> np.ndarray:
    """``-sum p log p / log K`` along the first axis (0 with one class)."""
    k = probs.shape[0]
    if k == 1:
        return np.zeros(probs.shape[1:], dtype=probs.dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(probs > 0, probs * np.log(probs), 0.0)
    return (-terms.sum(axis=0) / np.log(k)).astype(probs.dtype)


def quantize(values: np.ndarray) -> np.ndarray:
    """Values in ``[0, 1]`` (NaN: nodata) as uint8 ``0..254``, nodata 255."""
    out = np.full(values.shape, NODATA, dtype=np.uint8)
    ok = np.isfinite(values)
    out[ok] = np.rint(np.clip(values[ok], 0.0, 1.0) * SCALE).astype(np.uint8)
    return out


def dequantize(layer: xr.DataArray) -> xr.DataArray:
    """A uint8 layer (or quantised probabilities) back as float32 in ``[0, 1]``, NaN for nodata."""
    out = (layer.where(layer != NODATA) / SCALE).astype(np.float32)
    out.attrs = {k: v for k, v in layer.attrs.items() if k not in ("scale", "nodata")}
    return out.rio.write_nodata(np.nan, encoded=False)


_FUNCTIONS = {"confidence": confidence, "margin": margin, "entropy": entropy}


def _block(probs: np.ndarray, *, layer: str, class_ids: np.ndarray) -> np.ndarray:
    if layer == "labels":
        valid = np.isfinite(probs).all(axis=0)
        labels = class_ids[np.argmax(np.where(np.isfinite(probs), probs, -1.0), axis=0)]
        labels[~valid] = NODATA_LABEL
        return labels
    if layer == "probabilities":
        return quantize(probs)
    values = _FUNCTIONS[layer](probs)
    values[~np.isfinite(probs).all(axis=0)] = np.nan  # nodata stays nodata
    return quantize(values)


def layers_from_probabilities(
    probs: xr.DataArray, layers: Sequence[str], *, dtype: Dtype | None = None
) -> xr.DataArray | xr.Dataset:
    """The requested layers of a ``(class, y, x)`` probability map from ``predict``.

    One layer gives a DataArray, several a Dataset (variables ``landcover``, ``probability``,
    ``confidence``, ``margin``, ``entropy``) whose layers share the one probability graph.
    """
    data = probs.data if isinstance(probs.data, da.Array) else da.asarray(probs.data)
    class_ids = np.asarray(probs.attrs["class_ids"], dtype=np.uint8)
    spatial = {k: v for k, v in probs.coords.items() if k != "class"}
    classes = {
        k: probs.attrs[k] for k in ("class_ids", "class_names", "class_colors") if k in probs.attrs
    }
    out: dict[str, xr.DataArray] = {}
    for name in layers:
        if name == "probabilities" and dtype != "uint8":
            out["probability"] = probs
            continue
        per_class = name == "probabilities"
        result = da.map_blocks(
            _block,
            data,
            name=f"xlandcover-{name}-{data.name}",
            layer=name,
            dtype=np.uint8,
            drop_axis=None if per_class else 0,
            meta=np.empty((0,) * (3 if per_class else 2), dtype=np.uint8),
            class_ids=class_ids,
            **({} if per_class else {"chunks": data.chunks[1:]}),
        )
        key = {"labels": "landcover", "probabilities": "probability"}.get(name, name)
        if name == "labels":
            attrs = {"long_name": "land cover", **classes}
        elif per_class:
            attrs = {"long_name": "class probability", **classes, "scale": 1 / SCALE}
        else:
            attrs = {"long_name": _LONG_NAMES[name], "scale": 1 / SCALE}
        layer = xr.DataArray(
            result,
            dims=probs.dims if per_class else ("y", "x"),
            coords=probs.coords if per_class else spatial,
            attrs={**{k: v for k, v in probs.attrs.items() if k == "pixel_grid"}, **attrs},
            name=key,
        )
        layer = layer.rio.write_nodata(NODATA_LABEL if name == "labels" else NODATA, encoded=False)
        if probs.rio.crs is not None:
            layer = layer.rio.write_crs(probs.rio.crs).rio.write_transform(probs.rio.transform())
        out[key] = layer
    if len(out) == 1:
        return next(iter(out.values()))
    return xr.Dataset(out)
