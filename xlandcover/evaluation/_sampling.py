"""Probability samples of a label map for accuracy assessment and area estimation, out of core.

:func:`sample_design` draws a stratified random sample of pixels (strata: the map's classes, or
another label raster on the same grid) and returns it as points to label in QGIS or Collect
Earth. The estimators of :mod:`xlandcover.evaluation` turn the labelled sample into accuracy and
area estimates with confidence intervals.

How the sample is drawn
-----------------------
Every pixel gets a uniform random key, a 64-bit hash of ``(seed, global row, global column)``
(splitmix64 finaliser). Within each stratum the ``n_h`` pixels with the smallest keys form the
sample: the keys are independent and uniform, so every subset of ``n_h`` pixels is equally
likely, which is exactly simple random sampling without replacement within the stratum. One
pass over the map computes, per chunk, the class counts and each stratum's smallest keys; a tree
reduction keeps the smallest keys overall. Nothing depends on where chunk borders fall, so the
same seed gives the same sample for any chunking, and no whole-map array is ever built.

The order of the units within a stratum is the order of their keys, itself random: labelling
the first ``m`` units of every stratum labels a simple random subsample.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from .._deps import import_optional
from .._files import atomic_write, check_overwrite
from ..errors import (
    InputNotFoundError,
    SampleDesignError,
)
from ..io._labels import as_label_raster, check_same_grid
from ..model._package import NODATA_LABEL
from ._areas import row_area_function

if TYPE_CHECKING:
    import geopandas as gpd

__all__ = ["allocate", "read_sample", "sample_design", "sample_size", "write_sample"]

Allocation = Literal["proportional", "equal", "neyman"]

#: Column names of a sample drawn by :func:`sample_design` (besides ``geometry``).
SAMPLE_COLUMNS = (
    "unit",
    "stratum",
    "map",
    "reference",
    "row",
    "col",
    "x",
    "y",
    "lon",
    "lat",
    "pixel_area",
    "stratum_pixels",
    "stratum_area",
    "inclusion_probability",
)

_FAN_IN = 8


def _geopandas() -> Any:
    return import_optional("geopandas", "accuracy samples (GeoDataFrames)")


# --- sample size and allocation ----------------------------------------------------------------


def _per_stratum(value: Mapping[Any, float] | float, strata: Sequence[Any], what: str) -> dict:
    if isinstance(value, Mapping):
        missing = [h for h in strata if h not in value]
        if missing:
            raise SampleDesignError(
                f"{what} is missing for strata {missing}; give one value per stratum "
                f"(strata: {list(strata)}) or a single value for all"
            )
        out = {h: float(value[h]) for h in strata}
    else:
        out = {h: float(value) for h in strata}
    bad = {h: v for h, v in out.items() if not 0.0 <= v <= 1.0}
    if bad:
        raise SampleDesignError(f"{what} must lie in [0, 1], got {bad}")
    return out


def sample_size(
    stratum_sizes: Mapping[Any, float],
    users_accuracy: Mapping[Any, float] | float,
    *,
    target_se: float = 0.01,
) -> int:
    """Sample size for a target standard error of overall accuracy (Olofsson et al. 2014, eq. 13).

    ``n = (sum_i W_i S_i / S(O))^2`` with ``W_i`` the share of stratum ``i`` in the map,
    ``S_i = sqrt(U_i (1 - U_i))`` the standard deviation of stratum ``i`` under its anticipated
    user's accuracy ``U_i`` and ``S(O)`` the target standard error of overall accuracy (the
    finite population correction is ignored, as there). Rounded up.

    Parameters
    ----------
    stratum_sizes
        Pixels (or area) per stratum, e.g. the map's class counts.
    users_accuracy
        Anticipated user's accuracy per stratum, or one value for all.
    target_se
        Target standard error of the overall accuracy estimate.

    Examples
    --------
    Olofsson et al. (2014, section 5.1.1): map shares 0.02, 0.015, 0.32 and 0.645, anticipated
    user's accuracies 0.7, 0.6, 0.9 and 0.95, target standard error 0.01:

    >>> sample_size({1: 200_000, 2: 150_000, 3: 3_200_000, 4: 6_450_000},
    ...             {1: 0.7, 2: 0.6, 3: 0.9, 4: 0.95}, target_se=0.01)
    641
    """
    if not target_se > 0:
        raise SampleDesignError(f"target_se must be > 0, got {target_se}")
    strata = list(stratum_sizes)
    sizes = np.array([float(stratum_sizes[h]) for h in strata])
    if not strata or (sizes < 0).any() or sizes.sum() <= 0:
        raise SampleDesignError(f"stratum sizes must be >= 0 and not all 0, got {stratum_sizes}")
    accuracy = _per_stratum(users_accuracy, strata, "users_accuracy")
    u = np.array([accuracy[h] for h in strata])
    spread = float(np.sum(sizes / sizes.sum() * np.sqrt(u * (1.0 - u))))
    return max(1, math.ceil(round((spread / target_se) ** 2, 9)))


def _apportion(total: int, weights: dict[Any, float], caps: dict[Any, int]) -> dict[Any, int]:
    """``total`` units in proportion to ``weights`` (largest remainders), never above ``caps``."""
    alloc = dict.fromkeys(weights, 0)
    free = [h for h in weights if caps[h] > 0]
    remaining = min(total, sum(caps[h] for h in free))
    while remaining > 0 and free:
        w = np.array([weights[h] for h in free], dtype=np.float64)
        if w.sum() <= 0:  # no weight left (e.g. Neyman with U = 0 or 1): share equally
            w = np.ones(len(free))
        quota = remaining * w / w.sum()
        full = [h for h, q in zip(free, quota, strict=True) if q >= caps[h]]
        if full:  # census of these strata, the rest share what is left
            for h in full:
                alloc[h] = caps[h]
                remaining -= caps[h]
            free = [h for h in free if h not in full]
            continue
        base = np.floor(quota).astype(np.int64)
        order = np.argsort(-(quota - base), kind="stable")  # ties: the order of the strata
        base[order[: remaining - int(base.sum())]] += 1
        for h, b in zip(free, base, strict=True):
            alloc[h] = int(b)
        break
    return alloc


def allocate(
    stratum_sizes: Mapping[Any, int],
    n: int | None = None,
    *,
    allocation: Allocation | Mapping[Any, int] = "proportional",
    min_per_stratum: int | None = None,
    users_accuracy: Mapping[Any, float] | float | None = None,
) -> dict[Any, int]:
    """Units per stratum for a stratified random sample of ``n`` units.

    Parameters
    ----------
    stratum_sizes
        Pixels per stratum (strata with 0 pixels get no units).
    n
        Total sample size (not needed when ``allocation`` is a mapping).
    allocation
        ``"proportional"`` (``n_h`` proportional to the stratum size ``N_h``), ``"equal"``
        (the same ``n_h`` in every stratum), ``"neyman"`` (proportional to ``N_h S_h`` with
        ``S_h = sqrt(U_h (1 - U_h))``, optimal for overall accuracy given anticipated user's
        accuracies ``U_h``; Cochran 1977, eq. 5.26), or a mapping stratum -> ``n_h``.
    min_per_stratum
        Strata that would get fewer units get this many (or all their pixels), and the others
        share the rest; the compromise Olofsson et al. (2014, section 5.1.2) recommend so that
        rare classes have enough units for their user's accuracy. The total exceeds ``n`` only
        when ``min_per_stratum`` times the number of strata does.
    users_accuracy
        Anticipated user's accuracy per stratum (or one value) for ``"neyman"``.

    Returns
    -------
    dict
        ``n_h`` per stratum, never above ``N_h``, summing to ``n`` (or all pixels, if fewer).

    Examples
    --------
    >>> allocate({1: 200_000, 2: 150_000, 3: 3_200_000, 4: 6_450_000}, 641, min_per_stratum=75)
    {1: 75, 2: 75, 3: 163, 4: 328}
    """
    sizes = {h: int(v) for h, v in stratum_sizes.items()}
    if any(v < 0 for v in sizes.values()):
        raise SampleDesignError(f"stratum sizes must be >= 0, got {sizes}")
    if min_per_stratum is not None and min_per_stratum < 0:
        raise SampleDesignError(f"min_per_stratum must be >= 0, got {min_per_stratum}")
    lift = int(min_per_stratum or 0)
    if isinstance(allocation, Mapping):
        unknown = [h for h in allocation if h not in sizes]
        if unknown:
            raise SampleDesignError(
                f"allocation names strata {unknown} that are not in the map (strata: "
                f"{sorted(sizes)})"
            )
        alloc = {h: int(allocation.get(h, 0)) for h in sizes}
        over = {h: (v, sizes[h]) for h, v in alloc.items() if v > sizes[h] or v < 0}
        if over:
            listed = ", ".join(f"stratum {h}: {v} units of {s} px" for h, (v, s) in over.items())
            raise SampleDesignError(
                f"the allocation asks for more units than pixels (or a negative number): "
                f"{listed}; lower those n_h"
            )
        if n is not None and n != sum(alloc.values()):
            raise SampleDesignError(
                f"n={n} but the allocation sums to {sum(alloc.values())}; pass n=None with an "
                "explicit allocation"
            )
        return {h: max(v, min(lift, sizes[h])) for h, v in alloc.items()}
    if allocation not in ("proportional", "equal", "neyman"):
        raise SampleDesignError(
            f"allocation must be 'proportional', 'equal', 'neyman' or a mapping stratum -> n, "
            f"not {allocation!r}"
        )
    if n is None or int(n) < 1:
        raise SampleDesignError(f"n must be a positive number of sample units, got {n}")
    strata = [h for h in sizes if sizes[h] > 0]
    if allocation == "proportional":
        weights = {h: float(sizes[h]) for h in strata}
    elif allocation == "equal":
        weights = dict.fromkeys(strata, 1.0)
    else:
        if users_accuracy is None:
            raise SampleDesignError(
                "allocation='neyman' needs the anticipated user's accuracy of each stratum: "
                "pass users_accuracy={stratum: U, ...} (or one value for all)"
            )
        u = _per_stratum(users_accuracy, strata, "users_accuracy")
        weights = {h: sizes[h] * math.sqrt(u[h] * (1.0 - u[h])) for h in strata}
    caps = {h: sizes[h] for h in strata}
    fixed: dict[Any, int] = {}
    while True:
        rest = {h: weights[h] for h in strata if h not in fixed}
        share = _apportion(int(n) - sum(fixed.values()), rest, caps)
        low = [h for h in rest if share[h] < min(lift, sizes[h])]
        if not low:
            break
        for h in low:
            fixed[h] = min(lift, sizes[h])
    out = dict.fromkeys(sizes, 0)
    out.update(share)
    out.update(fixed)
    return out


# --- the draw -----------------------------------------------------------------------------------


def _splitmix(z: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def pixel_keys(seed: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``(len(rows), len(cols))`` uniform uint64 keys of the pixels at global ``rows x cols``.

    A pure function of ``(seed, row, column)``: the key of a pixel does not depend on the chunk
    it is computed in.
    """
    golden = np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        s = _splitmix(np.array([seed], dtype=np.uint64) ^ np.uint64(0x5851F42D4C957F2D))
        r = _splitmix(np.asarray(rows, dtype=np.uint64) * golden + s)
        c = np.asarray(cols, dtype=np.uint64) * np.uint64(0xD1B54A32D192ED03)
        return _splitmix(r[:, None] ^ c[None, :])


def _draw_block(
    strata: np.ndarray,
    mapped: np.ndarray,
    row0: int,
    col0: int,
    *,
    seed: int,
    cap: int,
    nodata: tuple[int, int],
    row_area: Any,
) -> dict[str, Any]:
    """Counts (and areas) of (stratum, map class) pairs and each stratum's ``cap`` smallest
    keys, for one chunk."""
    s, m = np.asarray(strata), np.asarray(mapped)
    h, w = s.shape
    valid = (s != nodata[0]) & (m != nodata[1])
    sv, mv = s[valid].astype(np.int64), m[valid].astype(np.int64)
    pairs = pd.DataFrame({"stratum": sv, "map": mv})
    if row_area is not None:
        areas = np.broadcast_to(row_area(row0, h)[:, None], (h, w))[valid]
        pairs["area"] = areas
    grouped = pairs.groupby(["stratum", "map"], sort=True)
    counts = grouped.size().rename("pixels").to_frame()
    if row_area is not None:
        counts["area"] = grouped["area"].sum()
    keys = pixel_keys(seed, np.arange(row0, row0 + h), np.arange(col0, col0 + w))[valid]
    flat = np.flatnonzero(valid.ravel())
    picked = []
    for value in np.unique(sv):
        where = np.flatnonzero(sv == value)
        if len(where) > cap:
            where = where[np.argpartition(keys[where], cap - 1)[:cap]]
        picked.append(where)
    sel = np.concatenate(picked) if picked else np.empty(0, np.int64)
    rows, cols = np.divmod(flat[sel], w)
    candidates = pd.DataFrame(
        {
            "stratum": sv[sel],
            "map": mv[sel],
            "row": rows + row0,
            "col": cols + col0,
            "key": keys[sel],
        }
    )
    return {"counts": counts, "candidates": candidates}


def _merge(parts: list[dict[str, Any]], *, cap: int) -> dict[str, Any]:
    counts = pd.concat([p["counts"] for p in parts]).groupby(level=[0, 1], sort=True).sum()
    cand = pd.concat([p["candidates"] for p in parts], ignore_index=True)
    cand = cand.sort_values(["stratum", "key", "row", "col"], kind="stable", ignore_index=True)
    cand = cand[cand.groupby("stratum").cumcount() < cap].reset_index(drop=True)
    return {"counts": counts, "candidates": cand}


def _reduce(parts: list[Any], cap: int) -> Any:
    """Tree reduction of per-chunk results, ``_FAN_IN`` at a time (memory stays O(sample))."""
    while len(parts) > 1:
        parts = [
            dask.delayed(_merge)(parts[i : i + _FAN_IN], cap=cap)
            for i in range(0, len(parts), _FAN_IN)
        ]
    return dask.delayed(_merge)(parts, cap=cap)


def _nodata(raster: xr.DataArray) -> int:
    nodata = raster.rio.nodata
    return NODATA_LABEL if nodata is None or np.isnan(nodata) else int(nodata)


def _check_strata(strata: xr.DataArray, labels: xr.DataArray) -> xr.DataArray:
    strata = as_label_raster(strata, what="the strata raster")
    check_same_grid(
        strata, labels, what="the strata raster", onto_what="the map", names=("strata", "labels")
    )
    return strata


def sample_design(
    labels: xr.DataArray,
    *,
    n: int | None = None,
    allocation: Allocation | Mapping[int, int] = "proportional",
    min_per_stratum: int | None = None,
    strata: xr.DataArray | None = None,
    seed: int = 0,
    users_accuracy: Mapping[int, float] | float | None = None,
) -> gpd.GeoDataFrame:
    """A stratified random sample of the pixels of a label map, for accuracy and area estimates.

    Parameters
    ----------
    labels
        The map: a ``(y, x)`` (or single-band) integer class raster, numpy- or Dask-backed
        (e.g. the lazy output of :func:`~xlandcover.predict`, or a COG opened with
        :func:`~xlandcover.open_raster`). Its nodata pixels (``rio.nodata``, else 255) are not
        part of the population.
    n
        Total number of sample units (not needed with an explicit ``allocation`` mapping).
    allocation
        How the units are shared among strata: ``"proportional"``, ``"equal"``, ``"neyman"``
        or a mapping stratum -> ``n_h``; see :func:`allocate`.
    min_per_stratum
        Lift small strata to at least this many units (Olofsson et al. 2014 suggest 50-100 per
        rare class); see :func:`allocate`.
    strata
        Another label raster on the same grid to stratify by (e.g. an older map); by default
        the strata are the map's classes. Its nodata pixels are not sampled either.
    seed
        Seed of the draw (a non-negative integer): the same seed gives the same sample, for any
        chunking of ``labels``.
    users_accuracy
        Anticipated user's accuracies per stratum for ``allocation="neyman"``.

    Returns
    -------
    geopandas.GeoDataFrame
        One row per unit, points at pixel centres in the map's CRS, ordered by stratum and then
        in random order: ``unit`` (0..n-1), ``stratum``, ``map`` (the map class), ``reference``
        (empty: fill it with the reference labels), ``row``/``col`` (pixel indices), ``x``/``y``
        (CRS coordinates), ``lon``/``lat`` (WGS84 degrees, for labelling tools; only with a
        CRS), ``pixel_area`` (m2, geodesic in geographic CRSs; only with a CRS),
        ``stratum_pixels`` (``N_h``), ``stratum_area`` (m2; only with a CRS) and
        ``inclusion_probability`` (``n_h / N_h``). ``attrs["sampling_design"]`` records the
        design (seed, allocation, ``n_h``, pixels per map class).

    Raises
    ------
    SampleDesignError
        A stratum would get fewer than two units (its standard errors would be undefined), or
        the allocation does not fit the strata.
    LabelAlignmentError
        ``strata`` is not on the map's grid.

    Examples
    --------
    >>> sample = sample_design(labels, n=600, min_per_stratum=50, seed=1)  # doctest: +SKIP
    >>> write_sample(sample, "sample.gpkg")  # doctest: +SKIP
    """
    gpd_mod = _geopandas()
    labels = as_label_raster(labels)
    strata_r = labels if strata is None else _check_strata(strata, labels)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**64:
        raise SampleDesignError(f"seed must be an integer in [0, 2**64), got {seed!r}")
    lift = int(min_per_stratum or 0)
    if isinstance(allocation, Mapping):
        cap = max([int(v) for v in allocation.values()] + [lift, 1])
    else:
        if n is None or int(n) < 1:
            raise SampleDesignError(f"n must be a positive number of sample units, got {n}")
        cap = max(int(n), lift)
    mapped = da.asarray(labels.data)
    strat = da.asarray(strata_r.data).rechunk(mapped.chunks)
    row_area = row_area_function(labels)
    row_edges = np.cumsum((0, *mapped.chunks[0]))
    col_edges = np.cumsum((0, *mapped.chunks[1]))
    nodata = (_nodata(strata_r), _nodata(labels))
    parts = [
        dask.delayed(_draw_block)(
            sb,
            mb,
            int(row_edges[i]),
            int(col_edges[j]),
            seed=int(seed),
            cap=cap,
            nodata=nodata,
            row_area=row_area,
        )
        for i, (s_row, m_row) in enumerate(
            zip(strat.to_delayed(), mapped.to_delayed(), strict=True)
        )
        for j, (sb, mb) in enumerate(zip(s_row, m_row, strict=True))
    ]
    (result,) = dask.compute(_reduce(parts, cap))
    counts: pd.DataFrame = result["counts"]
    if counts.empty:
        raise SampleDesignError(
            "the map has no pixel outside nodata to sample; check its nodata value and extent"
        )
    sizes = counts["pixels"].groupby(level="stratum").sum()
    n_h = allocate(
        {int(h): int(v) for h, v in sizes.items()},
        n,
        allocation=allocation,
        min_per_stratum=min_per_stratum,
        users_accuracy=users_accuracy,
    )
    short = {h: v for h, v in n_h.items() if v < min(2, int(sizes[h]))}
    if short:
        listed = ", ".join(f"{h} ({int(sizes[h])} px: {v} unit(s))" for h, v in short.items())
        raise SampleDesignError(
            f"strata {listed} get fewer than 2 sample units under this allocation, so their "
            "standard errors would be undefined; pass min_per_stratum= (Olofsson et al. 2014 "
            "suggest 50-100 for rare classes), a larger n, or merge those strata"
        )
    cand: pd.DataFrame = result["candidates"]
    quota = cand["stratum"].map(n_h)
    chosen = cand[cand.groupby("stratum").cumcount() < quota].reset_index(drop=True)
    return _frame(gpd_mod, chosen, labels, counts, n_h, row_area, seed, allocation)


def _frame(
    gpd_mod: Any,
    chosen: pd.DataFrame,
    labels: xr.DataArray,
    counts: pd.DataFrame,
    n_h: dict[int, int],
    row_area: Any,
    seed: int,
    allocation: Any,
) -> gpd.GeoDataFrame:
    rows = chosen["row"].to_numpy(np.int64)
    cols = chosen["col"].to_numpy(np.int64)
    if "x" in labels.coords and "y" in labels.coords:
        x = np.asarray(labels["x"].values, dtype=np.float64)[cols]
        y = np.asarray(labels["y"].values, dtype=np.float64)[rows]
    else:
        x, y = cols + 0.5, rows + 0.5
    sizes = counts["pixels"].groupby(level="stratum").sum()
    stratum = chosen["stratum"].to_numpy(np.int64)
    frame = pd.DataFrame(
        {
            "unit": np.arange(len(chosen), dtype=np.int64),
            "stratum": stratum,
            "map": chosen["map"].to_numpy(np.int64),
            "reference": pd.array([pd.NA] * len(chosen), dtype="Int64"),
            "row": rows,
            "col": cols,
            "x": x,
            "y": y,
        }
    )
    crs = labels.rio.crs
    if crs is not None:
        from pyproj import Transformer

        to_wgs84 = Transformer.from_crs(crs.to_wkt(), "EPSG:4326", always_xy=True)
        frame["lon"], frame["lat"] = to_wgs84.transform(x, y)
    if row_area is not None:
        frame["pixel_area"] = np.array([row_area(int(r), 1)[0] for r in rows], dtype=np.float64)
    frame["stratum_pixels"] = sizes.reindex(stratum).to_numpy(np.int64)
    if "area" in counts:
        frame["stratum_area"] = (
            counts["area"].groupby(level="stratum").sum().reindex(stratum).values
        )
    frame["inclusion_probability"] = (
        np.array([n_h[int(h)] for h in stratum], dtype=np.float64) / frame["stratum_pixels"]
    )
    geometry = gpd_mod.points_from_xy(x, y, crs=None if crs is None else crs.to_wkt())
    sample = gpd_mod.GeoDataFrame(frame, geometry=geometry)
    map_pixels = counts["pixels"].groupby(level="map").sum()
    sample.attrs["sampling_design"] = {
        "design": "stratified random",
        "seed": int(seed),
        "allocation": allocation if isinstance(allocation, str) else "explicit",
        "units_per_stratum": {int(h): int(v) for h, v in n_h.items()},
        "stratum_pixels": {int(h): int(v) for h, v in sizes.items()},
        "map_pixels": {int(k): int(v) for k, v in map_pixels.items()},
    }
    return sample


# --- files --------------------------------------------------------------------------------------

_DRIVERS = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON", ".csv": "CSV"}


def write_sample(
    sample: pd.DataFrame, path: str | os.PathLike[str], *, overwrite: bool = False
) -> Path:
    """Write a sample to GeoPackage (``.gpkg``), GeoJSON (``.geojson``) or CSV (``.csv``).

    The CSV has no geometry column; it keeps ``x``/``y`` (map CRS) and ``lon``/``lat`` (WGS84),
    which is what Collect Earth and spreadsheets read. The file appears only once complete.
    """
    target = Path(path)
    driver = _DRIVERS.get(target.suffix.lower())
    if driver is None:
        raise SampleDesignError(
            f"cannot tell the format of {target.name}: use .gpkg, .geojson or .csv"
        )
    check_overwrite(target, overwrite=overwrite)

    def write(tmp: Path) -> None:
        if driver == "CSV":
            pd.DataFrame(sample).drop(columns="geometry", errors="ignore").to_csv(tmp, index=False)
        else:
            _geopandas()
            sample.to_file(tmp, driver=driver, layer="sample" if driver == "GPKG" else None)

    return atomic_write(target, write)


def read_sample(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a sample written by :func:`write_sample` (or labelled elsewhere): a GeoDataFrame
    for GeoPackage/GeoJSON, a DataFrame for CSV."""
    source = Path(path)
    if not source.is_file():
        raise InputNotFoundError(f"sample file {source} does not exist; check the path")
    if source.suffix.lower() == ".csv":
        return pd.read_csv(source)
    return _geopandas().read_file(source)
