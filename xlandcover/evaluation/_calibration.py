"""Calibration of class probabilities: softmax temperature, expected calibration error, and
reliability diagrams, as plain functions.

Temperature scaling (Guo et al. 2017, "On calibration of modern neural networks", ICML,
section 4.2) divides a network's logits by one scalar ``T > 0`` before the softmax, chosen to
minimise the negative log-likelihood on held-out data; it leaves the argmax (the map) of a
single window unchanged and makes the probabilities, and the uncertainty layers computed from
them, mean what they say. :func:`fit_temperature` fits it; a model package stores it
(``save_model(..., temperature=T)``, ``extra["calibration"]["temperature"]``) and
:func:`~xlandcover.predict` applies it.

The expected calibration error (Guo et al. 2017, section 2) sorts predictions into ``M``
equal-width bins of confidence (the top probability), ``B_m = ((m - 1) / M, m / M]``, and
averages the gap between accuracy and mean confidence over the bins, weighted by their share:
``ECE = sum_m |B_m| / n * |acc(B_m) - conf(B_m)|``. :class:`ReliabilityCounts` holds the
per-bin sums, which add up chunk by chunk, so the ECE of a whole map is computed out of core.

Conventions: scores are ``(N, C, ...)`` arrays (numpy, or torch tensors) with the class axis
second (``axis=``), targets the matching ``(N, ...)`` class *indices* ``0..C-1`` in channel
order; pixels whose target is ``ignore_index`` are left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from ..errors import CalibrationError

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "Calibration",
    "ReliabilityCounts",
    "expected_calibration_error",
    "fit_temperature",
    "plot_reliability",
    "reliability_table",
    "softmax",
]


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _flatten(
    scores: Any, targets: Any, axis: int, ignore_index: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """``(M, C)`` scores and ``(M,)`` targets of the pixels to use."""
    s, t = _numpy(scores), _numpy(targets)
    if s.ndim < 2:
        raise CalibrationError(f"scores need a class axis: got shape {s.shape}")
    s = np.moveaxis(s, axis, -1)
    if s.shape[:-1] != t.shape:
        raise CalibrationError(
            f"targets of shape {t.shape} do not match scores of shape {s.shape} without their "
            f"class axis ({axis}); pass class indices per pixel"
        )
    k = s.shape[-1]
    s, t = s.reshape(-1, k), t.reshape(-1).astype(np.int64)
    keep = np.ones(t.shape, bool) if ignore_index is None else t != ignore_index
    bad = keep & ((t < 0) | (t >= k))
    if bad.any():
        raise CalibrationError(
            f"targets hold values {np.unique(t[bad])[:10].tolist()} outside the class indices "
            f"0..{k - 1}; map class ids to channel indices, or pass ignore_index="
        )
    return s[keep], t[keep]


def fit_temperature(
    scores: Any,
    targets: Any,
    *,
    inputs: Literal["logits", "probabilities"] = "logits",
    axis: int = 1,
    ignore_index: int | None = None,
    max_pixels: int = 2_000_000,
    seed: int = 0,
    bounds: tuple[float, float] = (0.05, 20.0),
) -> float:
    """The softmax temperature minimising the negative log-likelihood of ``targets``.

    Parameters
    ----------
    scores
        Logits (or probabilities, with ``inputs="probabilities"``: their logarithms are used as
        logits) of held-out pixels, e.g. the network's outputs on the validation chips,
        ``(N, C, H, W)``.
    targets
        Class indices ``(N, H, W)``.
    ignore_index
        Target value of pixels to leave out (unlabelled).
    max_pixels
        Fit on a random subset of at most this many pixels (drawn with ``seed``).
    bounds
        Search interval of the temperature.

    Returns
    -------
    float
        ``T``: predict divides the logits by ``T`` (``T > 1`` softens overconfident
        probabilities).

    Examples
    --------
    >>> T = fit_temperature(val_logits, val_targets, ignore_index=255)  # doctest: +SKIP
    >>> save_model(net, "model.xlc", ..., temperature=T)  # doctest: +SKIP
    """
    from scipy.optimize import minimize_scalar
    from scipy.special import logsumexp

    z, y = _flatten(scores, targets, axis, ignore_index)
    if not len(y):
        raise CalibrationError("no pixel to fit the temperature on (all targets ignored?)")
    if len(y) > max_pixels:
        pick = np.sort(np.random.default_rng(seed).choice(len(y), max_pixels, replace=False))
        z, y = z[pick], y[pick]
    z = z.astype(np.float64)
    if inputs == "probabilities":
        z = np.log(np.clip(z, 1e-12, None))
    elif inputs != "logits":
        raise CalibrationError(f"inputs must be 'logits' or 'probabilities', not {inputs!r}")
    picked = z[np.arange(len(y)), y]

    def nll(log_t: float) -> float:
        t = math.exp(log_t)
        return float(np.mean(logsumexp(z / t, axis=1) - picked / t))

    lo, hi = bounds
    if not 0 < lo < hi:
        raise CalibrationError(f"bounds must be 0 < low < high, got {bounds}")
    best = minimize_scalar(
        nll, bounds=(math.log(lo), math.log(hi)), method="bounded", options={"xatol": 1e-5}
    )
    return float(math.exp(best.x))


def softmax(scores: Any, *, temperature: float = 1.0, axis: int = 1) -> np.ndarray:
    """``softmax(scores / temperature)`` along ``axis`` (numpy)."""
    z = _numpy(scores).astype(np.float64) / temperature
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


@dataclass
class ReliabilityCounts:
    """Per-bin sums for the ECE and the reliability diagram; add instances to merge chunks."""

    bins: int = 15
    count: np.ndarray = field(default_factory=lambda: np.zeros(0))
    confidence: np.ndarray = field(default_factory=lambda: np.zeros(0))
    correct: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        for name in ("count", "confidence", "correct"):
            if getattr(self, name).size == 0:
                setattr(self, name, np.zeros(self.bins))

    @classmethod
    def of(
        cls,
        probs: Any,
        targets: Any,
        *,
        bins: int = 15,
        axis: int = 1,
        ignore_index: int | None = None,
    ) -> ReliabilityCounts:
        """Counts of class probabilities ``probs`` (class axis ``axis``) against ``targets``."""
        p, t = _flatten(probs, targets, axis, ignore_index)
        ok = np.isfinite(p).all(axis=1)
        p, t = p[ok], t[ok]
        conf = p.max(axis=1)
        hit = (p.argmax(axis=1) == t).astype(np.float64)
        b = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
        return cls(
            bins,
            np.bincount(b, minlength=bins).astype(np.float64),
            np.bincount(b, weights=conf, minlength=bins),
            np.bincount(b, weights=hit, minlength=bins),
        )

    def __add__(self, other: ReliabilityCounts) -> ReliabilityCounts:
        if other.bins != self.bins:
            raise CalibrationError(f"cannot add counts of {self.bins} and {other.bins} bins")
        return ReliabilityCounts(
            self.bins,
            self.count + other.count,
            self.confidence + other.confidence,
            self.correct + other.correct,
        )

    @property
    def ece(self) -> float:
        """Expected calibration error; NaN when nothing was counted."""
        n = self.count.sum()
        if n == 0:
            return math.nan
        return float(np.sum(np.abs(self.correct - self.confidence)) / n)

    def table(self) -> pd.DataFrame:
        """Per bin: ``low``, ``high``, ``count``, ``confidence`` and ``accuracy`` (NaN if empty)."""
        edges = np.linspace(0.0, 1.0, self.bins + 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return pd.DataFrame(
                {
                    "low": edges[:-1],
                    "high": edges[1:],
                    "count": self.count.astype(np.int64),
                    "confidence": np.where(self.count > 0, self.confidence / self.count, np.nan),
                    "accuracy": np.where(self.count > 0, self.correct / self.count, np.nan),
                }
            )


def expected_calibration_error(
    probs: Any,
    targets: Any,
    *,
    bins: int = 15,
    axis: int = 1,
    ignore_index: int | None = None,
) -> float:
    """ECE of class probabilities against targets (``bins`` equal-width confidence bins).

    Examples
    --------
    >>> p = [[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7]]
    >>> round(expected_calibration_error(p, [0, 1, 0, 1], bins=10), 4)
    0.4
    """
    return ReliabilityCounts.of(probs, targets, bins=bins, axis=axis, ignore_index=ignore_index).ece


def reliability_table(
    probs: Any,
    targets: Any,
    *,
    bins: int = 15,
    axis: int = 1,
    ignore_index: int | None = None,
) -> pd.DataFrame:
    """Accuracy and mean confidence per confidence bin (see :meth:`ReliabilityCounts.table`)."""
    counts = ReliabilityCounts.of(probs, targets, bins=bins, axis=axis, ignore_index=ignore_index)
    return counts.table()


def plot_reliability(
    *tables: pd.DataFrame | ReliabilityCounts,
    labels: tuple[str, ...] = (),
    ax: Axes | None = None,
) -> Axes:
    """Reliability diagram: accuracy against confidence per bin, one line per table, and the
    diagonal of perfect calibration; the share of pixels per bin is drawn as bars."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.5), layout="constrained")
    ax.plot([0, 1], [0, 1], color="#888888", linestyle="--", linewidth=1, label="calibrated")
    for i, t in enumerate(tables):
        counts = t if isinstance(t, ReliabilityCounts) else None
        table = t.table() if isinstance(t, ReliabilityCounts) else t
        ece = counts.ece if counts is not None else _ece_of_table(table)
        name = labels[i] if i < len(labels) else f"#{i + 1}"
        used = table["count"] > 0
        ax.plot(
            table.loc[used, "confidence"],
            table.loc[used, "accuracy"],
            marker="o",
            label=f"{name} (ECE {ece:.3f})",
        )
        if i == 0:
            share = table["count"] / max(int(table["count"].sum()), 1)
            ax.bar(
                (table["low"] + table["high"]) / 2,
                share,
                width=table["high"] - table["low"],
                color="#cccccc",
                alpha=0.6,
                label="share of pixels",
            )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top class probability)")
    ax.set_ylabel("accuracy")
    ax.set_title("reliability diagram")
    ax.legend(loc="upper left", fontsize="small")
    return ax


def _ece_of_table(table: pd.DataFrame) -> float:
    n = table["count"].sum()
    if n == 0:
        return math.nan
    gap = (table["accuracy"] - table["confidence"]).abs().fillna(0.0)
    return float((table["count"] * gap).sum() / n)


@dataclass(frozen=True, eq=False)
class Calibration:
    """Reliability of a model's probabilities on reference labels, before (``T = 1``) and
    after its stored temperature (from :func:`xlandcover.evaluation.evaluate_calibration`)."""

    temperature: float
    before: ReliabilityCounts
    after: ReliabilityCounts

    @property
    def ece_before(self) -> float:
        return self.before.ece

    @property
    def ece_after(self) -> float:
        return self.after.ece

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable temperature, ECEs and per-bin tables."""

        def clean(t: pd.DataFrame) -> list[dict[str, Any]]:
            return [
                {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
                for r in t.to_dict("records")
            ]

        return {
            "temperature": self.temperature,
            "ece_before": self.ece_before,
            "ece_after": self.ece_after,
            "bins_before": clean(self.before.table()),
            "bins_after": clean(self.after.table()),
        }

    def plot(self, ax: Axes | None = None) -> Axes:
        """Reliability diagram before and after the temperature."""
        return plot_reliability(
            self.before, self.after, labels=("T = 1", f"T = {self.temperature:.2f}"), ax=ax
        )

    def __str__(self) -> str:
        return (
            f"temperature {self.temperature:.3f}: expected calibration error "
            f"{self.ece_before:.4f} at T = 1, {self.ece_after:.4f} with the temperature"
        )
