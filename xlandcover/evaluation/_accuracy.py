"""Design-based accuracy and area estimates, with standard errors, from a labelled sample.

:func:`assess_sample` implements the stratified estimators of Stehman (2014): the sample is a
stratified random sample (a simple random or systematic sample is one stratum), and the strata
may differ from the map's classes, e.g. when a sample stratified by one map assesses another.
When the strata are the map's classes the estimators are those of Olofsson et al. (2013, 2014);
both papers' worked examples are reproduced by the tests.

Notation (Stehman 2014, section 2): stratum ``h`` has ``N_h`` pixels and ``n_h`` sample units,
``N = sum_h N_h``. For a variable ``y_u`` defined on every unit (an indicator such as "the
reference class is k"), ``ybar_h`` and ``s2_yh`` are its sample mean and variance (``n_h - 1``
denominator) in stratum ``h``, and

* the stratified estimator of its population total is ``Y = sum_h N_h ybar_h`` and of its mean
  ``Y / N`` (Stehman 2014, eq. 3; the proportion of area of class ``k`` is eq. 14 with
  ``y_u = 1`` when the reference class of ``u`` is ``k``; overall accuracy eq. 12 with
  ``y_u = 1`` when map and reference agree; the cells of the error matrix likewise);
* its variance is ``V(Y / N) = (1 / N^2) sum_h N_h^2 (1 - n_h / N_h) s2_yh / n_h``
  (Stehman 2014, eq. 25), without the finite population correction ``(1 - n_h / N_h)`` by
  default, as in Olofsson et al. (2014, eqs. 5 and 10);
* user's and producer's accuracies are ratios of two totals, ``R = Y / X`` (Stehman 2014,
  eqs. 18-19 and 22-23), with the ratio estimator's variance
  ``V(R) = (1 / X^2) sum_h N_h^2 (1 - n_h / N_h) (s2_yh + R^2 s2_xh - 2 R s_xyh) / n_h``
  (Stehman 2014, eq. 28; Cochran 1977, eq. 6.13). With strata = map classes this equals
  Olofsson et al. (2014), eq. 6 for user's and eq. 7 for producer's accuracy.

Areas are the totals of ``a_u y_u`` with ``a_u`` the unit's pixel area (so geodesic pixel
areas in geographic CRSs are handled without bias), and 95 % confidence intervals are
``estimate +- 1.96 SE`` (Olofsson et al. 2014, eq. 12).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import (
    InputTypeError,
    NonProbabilitySampleWarning,
    SampleDesignError,
    UnknownClassError,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["AreaAccuracy", "assess_error_matrix", "assess_sample"]

#: Columns that mark a table of training/validation chips (xlandcover.Chips.table, splits).
_CHIP_COLUMNS = {"chip", "nodata_frac"}
_PARTITIONS = {"train", "val", "validation", "test"}
_PROBABILITY_DESIGNS = {"stratified random", "simple random", "systematic"}
_AREA_UNITS = {"ha": 1e4, "km2": 1e6, "m2": 1.0}


# --- the two stratified estimators -------------------------------------------------------------


@dataclass(frozen=True)
class _Design:
    """Stratum membership of the units, stratum sizes and the variance factor per stratum."""

    codes: np.ndarray  # (n,) stratum index of each unit
    sizes: np.ndarray  # (H,) N_h
    counts: np.ndarray  # (H,) n_h
    factor: np.ndarray  # (H,) N_h^2 f_h / n_h (0 for strata sampled completely)

    @classmethod
    def build(cls, codes: np.ndarray, sizes: np.ndarray, fpc: bool) -> _Design:
        counts = np.bincount(codes, minlength=len(sizes)).astype(np.float64)
        f = 1.0 - counts / sizes if fpc else np.ones(len(sizes))
        f[counts >= sizes] = 0.0  # a census of the stratum: no sampling variance
        return cls(codes, sizes.astype(np.float64), counts, sizes**2 * f / counts)

    def means(self, y: np.ndarray) -> np.ndarray:
        """``(H, p)`` stratum means of the columns of ``y`` ``(n, p)``."""
        out = np.zeros((len(self.sizes), y.shape[1]))
        np.add.at(out, self.codes, y)
        return out / self.counts[:, None]

    def covariances(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """``(H, p)`` within-stratum sample covariances of matching columns (``n_h - 1``)."""
        dy = y - self.means(y)[self.codes]
        dx = x - self.means(x)[self.codes]
        out = np.zeros((len(self.sizes), y.shape[1]))
        np.add.at(out, self.codes, dy * dx)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.counts[:, None] > 1, out / (self.counts[:, None] - 1), 0.0)

    def total(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stratified estimates of the totals of the columns of ``y`` and their variances
        (Stehman 2014, eqs. 3 and 25, times ``N`` and ``N^2``)."""
        total = self.sizes @ self.means(y)
        variance = self.factor @ self.covariances(y, y)
        return total, variance

    def ratio(self, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ratio estimates ``Y / X`` column by column and their variances (Stehman 2014,
        eq. 28); NaN where ``X = 0``."""
        ty, _ = self.total(y)
        tx, _ = self.total(x)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where(tx > 0, ty / tx, np.nan)
            rr = np.nan_to_num(r)
            spread = (
                self.covariances(y, y)
                + rr**2 * self.covariances(x, x)
                - 2 * rr * self.covariances(y, x)
            )
            variance = np.where(tx > 0, (self.factor @ spread) / tx**2, np.nan)
        return r, np.maximum(variance, 0.0)


# --- the result ---------------------------------------------------------------------------------


def _json_value(v: Any) -> Any:
    if isinstance(v, float | np.floating):
        return None if math.isnan(float(v)) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


@dataclass(frozen=True, eq=False)
class AreaAccuracy:
    """Accuracy and area estimates of a map from a probability sample (see
    :func:`assess_sample`).

    Attributes
    ----------
    error_matrix
        Estimated proportions of area: rows map class, columns reference class (both by class
        name), summing to 1.
    classes
        Per class (index: class name): ``id``, ``area``, ``area_se``, ``area_ci_low``,
        ``area_ci_high`` (in ``area_unit``), ``proportion`` and ``proportion_se`` (of the
        mapped population), ``users_accuracy``, ``users_accuracy_se``,
        ``producers_accuracy``, ``producers_accuracy_se``, ``map_area`` (the map's pixel-count
        area), ``n_map`` and ``n_reference`` (sample units of that map / reference class).
        Undefined accuracies (a class never mapped, or absent from the reference sample) are
        NaN.
    overall_accuracy, overall_accuracy_se
        Overall accuracy and its standard error.
    strata
        Per stratum: ``pixels`` (``N_h``), ``units`` (``n_h``) and ``weight`` (``N_h / N``).
    area_unit
        Unit of the areas: ``"m2"`` (pixel areas in square metres), ``"pixels"``, or another
        unit given to :func:`assess_sample`.
    z
        The normal quantile of the confidence intervals (1.96 for 95 %).
    probability_sample
        False when the sample is not a probability sample: the estimates are then not
        design-unbiased, and every output says so.
    notes
        Warnings issued while estimating, repeated in the outputs.
    """

    error_matrix: pd.DataFrame
    classes: pd.DataFrame
    overall_accuracy: float
    overall_accuracy_se: float
    strata: pd.DataFrame
    area_unit: str
    z: float = 1.96
    probability_sample: bool = True
    notes: tuple[str, ...] = field(default=())

    @property
    def n(self) -> int:
        """Number of sample units."""
        return int(self.strata["units"].sum())

    def _scale(self, area_unit: str | None) -> tuple[float, str]:
        if area_unit is None or area_unit == self.area_unit:
            return 1.0, self.area_unit
        if self.area_unit == "m2" and area_unit in _AREA_UNITS:
            return 1.0 / _AREA_UNITS[area_unit], area_unit
        raise SampleDesignError(
            f"cannot express areas in {self.area_unit} as {area_unit!r}; areas in m2 convert "
            f"to {sorted(_AREA_UNITS)}"
        )

    def table(self, *, area_unit: str | None = "ha") -> pd.DataFrame:
        """Per-class estimates with areas in ``area_unit`` (``"ha"``, ``"km2"`` or ``"m2"``,
        from m2; ``None``: as estimated) and the half-width of the confidence interval."""
        scale, unit = self._scale(area_unit if self.area_unit == "m2" else None)
        c = self.classes
        out = pd.DataFrame(
            {
                f"area ({unit})": c["area"] * scale,
                "± CI": self.z * c["area_se"] * scale,
                f"map area ({unit})": c["map_area"] * scale,
                "user's acc.": c["users_accuracy"],
                "± UA CI": self.z * c["users_accuracy_se"],
                "producer's acc.": c["producers_accuracy"],
                "± PA CI": self.z * c["producers_accuracy_se"],
                "units (map)": c["n_map"],
            },
            index=c.index,
        )
        return out

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable estimates (None where undefined)."""
        records = {
            str(name): {k: _json_value(v) for k, v in row.items()}
            for name, row in self.classes.iterrows()
        }
        return {
            "probability_sample": self.probability_sample,
            "notes": list(self.notes),
            "overall_accuracy": _json_value(self.overall_accuracy),
            "overall_accuracy_se": _json_value(self.overall_accuracy_se),
            "confidence_z": self.z,
            "area_unit": self.area_unit,
            "n": self.n,
            "classes": records,
            "error_matrix": {
                "rows": "map",
                "columns": "reference",
                "labels": [str(c) for c in self.error_matrix.columns],
                "proportions": [
                    [_json_value(v) for v in row] for row in self.error_matrix.to_numpy()
                ],
            },
            "strata": {
                str(h): {k: _json_value(v) for k, v in row.items()}
                for h, row in self.strata.iterrows()
            },
        }

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """The :meth:`summary` as JSON text; also written to ``path`` when given."""
        text = json.dumps(self.summary(), indent=2, allow_nan=False) + "\n"
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def format(self, *, area_unit: str | None = "ha") -> str:
        """A text table: per-class estimates, then overall accuracy and the sample size."""
        half = self.z * self.overall_accuracy_se
        lines = []
        if not self.probability_sample:
            lines += ["NOT A PROBABILITY SAMPLE: these estimates are not design-unbiased.", ""]
        table = self.table(area_unit=area_unit)
        areas = [c for c in table.columns if c.startswith(("area", "map area", "± CI"))]
        big = bool((table[areas].abs() >= 100).to_numpy().any())
        formats: dict[str, Callable[[Any], str]] = {
            c: (_big if big else _small) if c in areas else _acc for c in table.columns
        }
        formats["units (map)"] = str
        lines += [
            table.to_string(formatters=formats),
            "",
            f"overall accuracy  {self.overall_accuracy:.3f} ± {half:.3f} ({self.n} units, "
            f"{len(self.strata)} strata; ± is the 95 % CI half-width)",
        ]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()

    def plot(self, ax: Axes | None = None, *, area_unit: str | None = "ha") -> Axes:
        """Estimated area per class with its 95 % interval, beside the map's pixel-count area."""
        import matplotlib.pyplot as plt

        scale, unit = self._scale(area_unit if self.area_unit == "m2" else None)
        c = self.classes
        k = len(c)
        if ax is None:
            _, ax = plt.subplots(figsize=(2.0 + 0.9 * k, 4.0), layout="constrained")
        x = np.arange(k)
        ax.bar(x - 0.2, c["map_area"] * scale, 0.4, color="#bbbbbb", label="map (pixel count)")
        ax.bar(x + 0.2, c["area"] * scale, 0.4, color="#1f78b4", label="estimate")
        ax.errorbar(
            x + 0.2,
            c["area"] * scale,
            yerr=self.z * c["area_se"] * scale,
            fmt="none",
            ecolor="black",
            capsize=4,
            label="95 % interval",
        )
        ax.set_xticks(x, labels=[str(i) for i in c.index], rotation=30, ha="right")
        ax.set_ylabel(f"area ({unit})")
        title = f"area from {self.n} sample units (OA {self.overall_accuracy:.2f})"
        if not self.probability_sample:
            title = "NOT A PROBABILITY SAMPLE\n" + title
        ax.set_title(title)
        ax.legend(fontsize="small")
        return ax


def _big(v: float) -> str:
    return f"{v:,.0f}"


def _small(v: float) -> str:
    return f"{v:,.2f}"


def _acc(v: float) -> str:
    return f"{v:.3f}"


# --- inputs -------------------------------------------------------------------------------------


def _warn(message: str, notes: list[str]) -> None:
    notes.append(message)
    warnings.warn(message, NonProbabilitySampleWarning, stacklevel=3)


def _probability_checks(sample: pd.DataFrame, notes: list[str]) -> bool:
    """Warn (and return False) when the sample is marked or recognisably not a probability one."""
    ok = True
    columns = set(sample.columns)
    partitions = {
        str(v).lower()
        for col in ("partition", "split")
        if col in columns
        for v in sample[col].dropna().unique()
    }
    if columns >= _CHIP_COLUMNS or (partitions and partitions <= _PARTITIONS):
        _warn(
            "NOT A PROBABILITY SAMPLE: these are training/validation chips, placed for "
            "training, not drawn at random from the map, so accuracy and areas from them are "
            "biased. Draw an independent sample with xlandcover.sample_design() and label it.",
            notes,
        )
        ok = False
    design = sample.attrs.get("sampling_design", {})
    design = design.get("design") if isinstance(design, Mapping) else design
    for col in ("design", "sampling_design"):
        if col in columns and design is None:
            values = sample[col].dropna().unique()
            design = str(values[0]) if len(values) == 1 else None
    if design is not None and str(design).lower() not in _PROBABILITY_DESIGNS:
        _warn(
            f"NOT A PROBABILITY SAMPLE: the sample is marked as {design!r}; the estimators "
            "assume a stratified random, simple random or systematic sample.",
            notes,
        )
        ok = False
    if "inclusion_probability" in columns:
        pi = pd.to_numeric(sample["inclusion_probability"], errors="coerce")
        bad = int((pi.isna() | (pi <= 0) | (pi > 1)).sum())
        if bad:
            _warn(
                f"NOT A PROBABILITY SAMPLE: {bad} unit(s) have no valid inclusion probability "
                "(missing, <= 0 or > 1), so the sample is not a probability sample of the map.",
                notes,
            )
            ok = False
    return ok


def _labels(values: pd.Series, what: str, column: str) -> pd.Series:
    """Labels as integers when they are integral numbers (files may store them as floats)."""
    if values.isna().any():
        missing = values.index[values.isna()].tolist()
        raise SampleDesignError(
            f"{int(values.isna().sum())} unit(s) have no {what} label in column {column!r} "
            f"(rows {missing[:10]}{' ...' if len(missing) > 10 else ''}); label them, or drop "
            "them only if they were skipped at random (dropping units for their class biases "
            "the estimates)"
        )
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all() and (numeric == np.round(numeric)).all():
        return numeric.astype(np.int64)
    return values


def _strata(
    sample: pd.DataFrame, stratum: str | None, stratum_sizes: Any
) -> tuple[pd.Series, dict[Hashable, float]]:
    """Stratum of every unit and ``N_h`` of every stratum, from the arguments or the sample."""
    columns = set(sample.columns)
    pi = (
        pd.to_numeric(sample["inclusion_probability"], errors="coerce")
        if "inclusion_probability" in columns
        else None
    )
    if stratum is None or (
        stratum not in columns and stratum_sizes is not None and _scalar(stratum_sizes)
    ):
        labels = pd.Series("all", index=sample.index)
    elif stratum in columns:
        labels = sample[stratum]
        if labels.isna().any():
            raise SampleDesignError(
                f"{int(labels.isna().sum())} unit(s) have no stratum in column {stratum!r}"
            )
        labels = _labels(labels, "stratum", stratum)
    elif pi is not None and pi.notna().all() and np.allclose(pi, pi.iloc[0]):
        labels = pd.Series("all", index=sample.index)  # equal probabilities: one stratum
    else:
        what = "inclusion probabilities" if pi is None else "equal inclusion probabilities"
        raise SampleDesignError(
            f"the sample has no stratum column {stratum!r} and no {what}, so its design is "
            "unknown and no estimator applies. Give the column holding each unit's stratum "
            "(stratum=...) with stratum_sizes={stratum: pixels} or an 'inclusion_probability' "
            "column; for a simple random sample pass stratum=None, stratum_sizes=<pixels in "
            "the population>"
        )
    n_h = labels.value_counts(sort=False)
    sizes: dict[Hashable, float]
    if stratum_sizes is not None:
        if _scalar(stratum_sizes):
            if n_h.size != 1:
                raise SampleDesignError(
                    f"one population size was given but the sample has {n_h.size} strata; "
                    "give stratum_sizes={stratum: pixels, ...}"
                )
            sizes = {n_h.index[0]: float(stratum_sizes)}
        else:
            sizes = {_key(h): float(v) for h, v in dict(stratum_sizes).items()}
    elif "stratum_pixels" in columns:
        sizes = _constant_per_stratum(sample["stratum_pixels"], labels, "stratum_pixels")
    elif pi is not None:
        per = _constant_per_stratum(pi, labels, "inclusion_probability")
        sizes = {h: n_h[h] / p for h, p in per.items()}
    else:
        raise SampleDesignError(
            "stratum sizes are missing: pass stratum_sizes={stratum: pixels in the map, ...} "
            "(the population size of each stratum), or keep the 'stratum_pixels' or "
            "'inclusion_probability' column that sample_design() writes"
        )
    missing = [h for h in n_h.index if _key(h) not in sizes]
    if missing:
        raise SampleDesignError(
            f"stratum sizes are missing for strata {missing}; stratum_sizes must give the "
            f"pixels of every stratum in the sample (given: {sorted(map(str, sizes))})"
        )
    return labels, sizes


def _scalar(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating)


def _key(h: Any) -> Hashable:
    return int(h) if isinstance(h, np.integer) else h


def _constant_per_stratum(values: pd.Series, labels: pd.Series, column: str) -> dict:
    v = pd.to_numeric(values, errors="coerce")
    per = v.groupby(labels.to_numpy()).agg(["min", "max"])
    varying = per.index[~np.isclose(per["min"], per["max"])].tolist()
    if varying or per.isna().any().any():
        raise SampleDesignError(
            f"column {column!r} differs within strata {varying} (or is missing): under "
            "stratified random sampling it is the same for every unit of a stratum; pass "
            "stratum_sizes= explicitly"
        )
    return {_key(h): float(x) for h, x in per["min"].items()}


def _map_area_from_strata(
    sample: pd.DataFrame, strata: pd.Series, mapped: pd.Series, ids: list[Any]
) -> np.ndarray | None:
    """The map's area per class from the ``stratum_area`` column when every stratum is one map
    class (the default design of ``sample_design``); None otherwise (then it is estimated)."""
    if "stratum_area" not in sample.columns or not (strata.to_numpy() == mapped.to_numpy()).all():
        return None
    areas = _constant_per_stratum(sample["stratum_area"], strata, "stratum_area")
    return np.array([areas.get(i, 0.0) for i in ids], dtype=np.float64)


def _class_list(
    classes: Sequence[Any] | Mapping[Any, str] | None, mapped: pd.Series, reference: pd.Series
) -> tuple[list[Any], list[str]]:
    if classes is None:
        ids = sorted(
            set(mapped.tolist()) | set(reference.tolist()), key=lambda v: (str(type(v)), v)
        )
        return ids, [str(i) for i in ids]
    if isinstance(classes, Mapping):
        ids, names = list(classes), [str(v) for v in classes.values()]
    else:
        ids = list(classes)
        names = [str(i) for i in ids]
    if len(set(ids)) != len(ids) or len(set(names)) != len(names):
        raise UnknownClassError(f"classes must be distinct, got {classes!r}")
    for values, what in ((reference, "reference"), (mapped, "map")):
        unknown = sorted({v for v in values.tolist() if v not in set(ids)}, key=str)
        if unknown:
            raise UnknownClassError(
                f"the {what} labels hold values {unknown[:10]} that are not in the class list "
                f"{ids}; fix the labels (a typo, or nodata such as 0/255 left in), or add the "
                "classes to classes="
            )
    return ids, names


# --- the estimator ------------------------------------------------------------------------------


def assess_sample(
    sample: pd.DataFrame | str | os.PathLike[str],
    *,
    reference: str = "reference",
    mapped: str = "map",
    stratum: str | None = "stratum",
    stratum_sizes: Mapping[Any, float] | float | None = None,
    pixel_area: float | None = None,
    area_unit: str = "m2",
    classes: Sequence[Any] | Mapping[Any, str] | None = None,
    finite_population_correction: bool = False,
    z: float = 1.96,
) -> AreaAccuracy:
    """Accuracy and error-adjusted areas, with standard errors, from a labelled sample.

    The general stratified estimators of Stehman (2014), see the module docstring: the strata
    may be the map's classes (Olofsson et al. 2013, 2014), other classes, or a single stratum
    (simple random or systematic sampling).

    Parameters
    ----------
    sample
        One row per sample unit (a DataFrame or GeoDataFrame, or the path of a file written
        by :func:`~xlandcover.evaluation.write_sample`): typically the output of
        :func:`~xlandcover.sample_design` with the reference labels a person added.
    reference, mapped, stratum
        Columns holding each unit's reference class, map class and stratum. ``stratum=None``:
        the whole sample is one simple random sample.
    stratum_sizes
        Pixels per stratum (``N_h``), a mapping stratum -> pixels, or one number for a single
        stratum. Default: read from the sample's ``stratum_pixels`` column, or derived from
        its ``inclusion_probability`` column (``N_h = n_h / pi_h``).
    pixel_area
        Area of one pixel, in ``area_unit``. Default: the sample's per-unit ``pixel_area``
        column (m2; geodesic in geographic CRSs), else areas are in pixels.
    area_unit
        Unit of ``pixel_area`` when it is given (``"m2"`` converts to ha and km2 in
        :meth:`AreaAccuracy.table`).
    classes
        The class list (ids, or a mapping id -> name), in the order of the outputs. Default:
        every class found in the map or reference labels.
    finite_population_correction
        Multiply each stratum's variance by ``1 - n_h / N_h`` (Stehman 2014, eq. 25). Off by
        default, as in Olofsson et al. (2014): negligible for samples of maps.
    z
        Normal quantile of the confidence intervals (1.96: 95 %, as in Olofsson et al. 2014).

    Returns
    -------
    AreaAccuracy

    Raises
    ------
    SampleDesignError
        The sample has no strata and no inclusion probabilities; stratum sizes are missing or
        smaller than a stratum's sample; a stratum has fewer than two units (its standard
        error is undefined) or units lack a label.
    UnknownClassError
        Reference (or map) labels that are not in ``classes``.

    Warns
    -----
    NonProbabilitySampleWarning
        The sample is training/validation chips, is marked as a non-probability design, or
        has units without an inclusion probability. The result is flagged
        (``probability_sample=False``) in every output too.

    Examples
    --------
    >>> sample = read_sample("sample.gpkg")  # doctest: +SKIP
    >>> result = assess_sample(sample, reference="ref")  # doctest: +SKIP
    >>> result.table()  # areas in ha with 95 % intervals  # doctest: +SKIP
    """
    if isinstance(sample, str | os.PathLike):
        from ._sampling import read_sample

        sample = read_sample(sample)
    from ..training._chips import Chips
    from ..training._splits import Splits

    if isinstance(sample, Chips | Splits):
        raise SampleDesignError(
            "training/validation chips are not a probability sample of the map and cannot "
            "give design-based accuracy or areas; draw one with xlandcover.sample_design(), "
            "label it and pass that"
        )
    if not isinstance(sample, pd.DataFrame):
        raise InputTypeError(
            f"sample must be a DataFrame (e.g. from read_sample), not {type(sample).__name__}"
        )
    for col, what in ((reference, "reference"), (mapped, "map")):
        if col not in sample.columns:
            raise SampleDesignError(
                f"the sample has no {what} column {col!r} (columns: {list(sample.columns)}); "
                f"pass {'reference' if what == 'reference' else 'mapped'}=<column name>"
            )
    if not len(sample):
        raise SampleDesignError("the sample is empty")
    notes: list[str] = []
    probability = _probability_checks(sample, notes)
    ref = _labels(sample[reference], "reference", reference)
    mapv = _labels(sample[mapped], "map", mapped)
    ids, names = _class_list(classes, mapv, ref)
    strata_labels, sizes = _strata(sample, stratum, stratum_sizes)

    # stratum codes, sizes, and the checks of the design
    sampled = set(strata_labels.map(_key).tolist())
    order = [h for h in sizes if float(sizes[h]) > 0 or h in sampled]
    codes = pd.Categorical(strata_labels.map(_key), categories=order)
    n_h = np.bincount(codes.codes, minlength=len(order))
    N_h = np.array([float(sizes[h]) for h in order])
    problems = {h: (int(m), s) for h, m, s in zip(order, n_h, N_h, strict=True) if m > s}
    if problems:
        listed = ", ".join(f"{h}: {m} units but {s:g} px" for h, (m, s) in problems.items())
        raise SampleDesignError(
            f"stratum sizes are smaller than the sample in strata {listed}; stratum_sizes "
            "must be the number of pixels of each stratum in the whole map"
        )
    short = {h: int(m) for h, m, s in zip(order, n_h, N_h, strict=True) if m < min(2, s)}
    if short:
        listed = ", ".join(f"{h} ({m} unit{'s' if m != 1 else ''})" for h, m in short.items())
        raise SampleDesignError(
            f"strata {listed} have fewer than two sample units, so their variance (and every "
            "standard error) is undefined; sample at least two units per stratum, or merge "
            "the stratum with a similar one (and add up their sizes)"
        )
    design = _Design.build(codes.codes.astype(np.int64), N_h, finite_population_correction)

    # indicator variables per unit
    k = len(ids)
    ref_i = pd.Categorical(ref, categories=ids).codes
    map_i = pd.Categorical(mapv, categories=ids).codes
    eye = np.eye(k)
    r_ind, m_ind = eye[ref_i], eye[map_i]
    correct = r_ind * m_ind
    if pixel_area is not None:
        unit_area = np.full(len(sample), float(pixel_area))
        unit = area_unit
    elif "pixel_area" in sample.columns:
        unit_area = pd.to_numeric(sample["pixel_area"], errors="coerce").to_numpy(np.float64)
        if not np.isfinite(unit_area).all():
            raise SampleDesignError("the 'pixel_area' column has missing values; pass pixel_area=")
        unit = "m2"
    else:
        unit_area = np.ones(len(sample))
        unit = "pixels"

    total_n = float(N_h.sum())
    cells, _ = design.total((m_ind[:, :, None] * r_ind[:, None, :]).reshape(len(sample), k * k))
    prop, prop_var = design.total(r_ind)
    area, area_var = design.total(unit_area[:, None] * r_ind)
    map_area, _ = design.total(unit_area[:, None] * m_ind)
    agree, agree_var = design.total((ref_i == map_i).astype(np.float64)[:, None])
    exact = _map_area_from_strata(sample, strata_labels, mapv, ids) if unit == "m2" else None
    if (
        exact is not None and pixel_area is None
    ):  # strata are the map classes: their areas are the map's areas
        map_area = exact
    ua, ua_var = design.ratio(correct, m_ind)
    pa, pa_var = design.ratio(correct, r_ind)
    area_se = np.sqrt(area_var)
    table = pd.DataFrame(
        {
            "id": ids,
            "area": area,
            "area_se": area_se,
            "area_ci_low": area - z * area_se,
            "area_ci_high": area + z * area_se,
            "proportion": prop / total_n,
            "proportion_se": np.sqrt(prop_var) / total_n,
            "users_accuracy": ua,
            "users_accuracy_se": np.sqrt(ua_var),
            "producers_accuracy": pa,
            "producers_accuracy_se": np.sqrt(pa_var),
            "map_area": map_area,
            "n_map": m_ind.sum(axis=0).astype(np.int64),
            "n_reference": r_ind.sum(axis=0).astype(np.int64),
        },
        index=pd.Index(names, name="class"),
    )
    matrix = pd.DataFrame(
        cells.reshape(k, k) / total_n,
        index=pd.Index(names, name="map"),
        columns=pd.Index(names, name="reference"),
    )
    strata_table = pd.DataFrame(
        {"pixels": N_h, "units": n_h.astype(np.int64), "weight": N_h / total_n},
        index=pd.Index([str(h) for h in order], name="stratum"),
    )
    return AreaAccuracy(
        error_matrix=matrix,
        classes=table,
        overall_accuracy=float(agree[0] / total_n),
        overall_accuracy_se=float(math.sqrt(agree_var[0]) / total_n),
        strata=strata_table,
        area_unit=unit,
        z=float(z),
        probability_sample=probability,
        notes=tuple(notes),
    )


def assess_error_matrix(
    counts: Any,
    map_sizes: Mapping[Any, float] | Sequence[float],
    *,
    classes: Sequence[Any] | Mapping[Any, str] | None = None,
    pixel_area: float | None = None,
    area_unit: str = "m2",
    finite_population_correction: bool = False,
    z: float = 1.96,
) -> AreaAccuracy:
    """:func:`assess_sample` for a stratified sample given as an error matrix of counts, with
    the map classes as strata (Olofsson et al. 2014, section 5; their Table 8 form).

    Parameters
    ----------
    counts
        ``(K, K)`` sample counts, rows map class, columns reference class.
    map_sizes
        Pixels per map class (the strata sizes), in row order or as a mapping class -> pixels.
    classes
        Class ids (or id -> name), in row order; default ``1..K``.

    Examples
    --------
    Olofsson et al. (2014), Table 8: areas in ha with 95 % intervals.

    >>> r = assess_error_matrix(
    ...     [[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]],
    ...     [200_000, 150_000, 3_200_000, 6_450_000], pixel_area=900)
    >>> r.table()["area (ha)"].round().tolist()
    [21158.0, 11686.0, 285770.0, 581386.0]
    """
    cm = np.asarray(counts)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.dtype.kind not in "iu" or (cm < 0).any():
        raise SampleDesignError("counts must be a square matrix of non-negative integer counts")
    k = cm.shape[0]
    ids = list(classes) if classes is not None else list(range(1, k + 1))
    if len(ids) != k:
        raise SampleDesignError(f"need {k} classes for a {k}x{k} matrix, got {len(ids)}")
    sizes = (
        dict(map_sizes)
        if isinstance(map_sizes, Mapping)
        else dict(zip(ids, map_sizes, strict=True))
    )
    rows, cols = np.nonzero(cm)
    reps = cm[rows, cols]
    units = pd.DataFrame(
        {
            "map": np.repeat(np.asarray(ids, dtype=object)[rows], reps),
            "reference": np.repeat(np.asarray(ids, dtype=object)[cols], reps),
        }
    )
    units["stratum"] = units["map"]
    return assess_sample(
        units,
        stratum_sizes=sizes,
        pixel_area=pixel_area,
        area_unit=area_unit,
        classes=classes if classes is not None else ids,
        finite_population_correction=finite_population_correction,
        z=z,
    )
