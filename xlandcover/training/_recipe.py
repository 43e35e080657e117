"""The training recipe: settings chosen from the data (``train(..., recipe="auto")``).

A :class:`DataProfile` summarises the training chips (how many, how big, how many labelled
pixels, bands, pixel size, class balance); :func:`auto_settings` turns it into the settings of
a run, each with the reason it was chosen. Settings the caller gives explicitly always win;
``recipe="none"`` fills the gaps with fixed defaults instead (:data:`FIXED_DEFAULTS`).

The rules were chosen by measurement on real scenes (``benchmarks/recipe_accuracy.py``; the
table is in ``docs/training.md``), for kinds of data rather than for one scene:

- the predict window is the chip size: that is what validation scores, so what users get;
- the network gets a per-pixel branch (``pixel_branch``) next to its context path, so each
  pixel's own spectrum, what makes a per-pixel random forest strong, is one 1x1 convolution
  away rather than behind a stride-2 stem;
- small data is the common case: a small encoder, strong geometric augmentation, enough
  optimiser steps whatever the chip count, and an exponential moving average of the weights
  (scored and saved) so the chosen epoch is not a lucky swing of a noisy score; with fewer
  than :data:`SMALL_DATA_CHIPS` training chips, stronger regularisation (weight decay 0.05,
  :data:`SMALL_DATA_AUGMENT`) and fewer steps (6 per chip, at least 500): there the
  validation score peaked early and fell as the network memorised its few chips;
- class weights are bounded (square root of median-frequency weights, within [1/4, 4]), so rare
  classes count without flooding the map;
- band statistics are robust (clipped to the 1st-99th percentiles), for raw digital numbers
  with saturated or cloudy pixels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from ..model._spectral import available_indices
from ._augment import AugmentConfig
from ._chips import Chips

#: What ``recipe="none"`` uses for every setting not given (the settings of xlandcover 0.1).
FIXED_DEFAULTS: Mapping[str, Any] = {
    "architecture": "Unet",
    "encoder": "resnet34",
    "arch_kwargs": {},
    "pixel_branch": 0,
    "indices": [],
    "loss": "combo",
    "class_weights": "median_frequency",
    "epochs": 30,
    "batch_size": 8,
    "lr": 1e-3,
    "weight_decay": 1e-4,
    "schedule": "onecycle",
    "ema": 0.0,
    "patience": 8,
    "normalization": "standard",
    "val_every": 1,
}

#: Pixels per optimiser step the recipe aims at (8 chips of 128 px; 4 to 16 chips).
PIXELS_PER_STEP = 8 * 128 * 128
#: Optimiser steps the recipe aims at, whatever the number of chips (at least 6 per chip
#: below :data:`MIN_STEPS`, but never fewer than :data:`SMALL_DATA_MIN_STEPS`).
MIN_STEPS, MAX_STEPS = 1500, 6000
SMALL_DATA_MIN_STEPS = 500
#: Validation may take about this share of the training time.
VALIDATION_SHARE = 0.25
#: Fewer training chips than this are small data: stronger regularisation.
SMALL_DATA_CHIPS = 256
#: The augmentation for small data: the intensity transforms twice as strong or frequent.
SMALL_DATA_AUGMENT = AugmentConfig(
    brightness=0.2, contrast=0.2, channel_dropout=0.2, blur=0.2, cutout=0.25
)


@dataclass(frozen=True)
class DataProfile:
    """What the recipe looks at: a summary of the training (and validation) chips."""

    n_chips: int
    n_val_chips: int
    chip_size: int
    n_bands: int
    #: Pixel size in metres (None on a plain pixel grid without a CRS).
    pixel_size_m: float | None
    #: Labelled pixels of the training chips, counted once even where chips overlap.
    labelled_pixels: int
    #: Share of the training chips' pixels that carry a label.
    labelled_share: float
    #: Share of each class among the labelled training pixels.
    class_shares: tuple[float, ...]
    #: Pixels the validation scores through the seamless predictor (bounding regions).
    val_pixels: int
    #: Band names, in order.
    bands: tuple[str, ...] = ()

    @classmethod
    def from_chips(cls, train: Chips, val: Chips) -> DataProfile:
        from ..evaluation._evaluate import regions_of

        counts = train.counts.sum(axis=0).astype(np.float64)
        total = counts.sum()
        shares = counts / total if total > 0 else np.zeros_like(counts)
        chip_px = len(train) * train.size**2
        overlap = _overlap_factor(train)
        val_px = sum(
            (r.rows.stop - r.rows.start) * (r.cols.stop - r.cols.start)
            for r in regions_of(val, margin=val.size // 2)
        )
        return cls(
            n_chips=len(train),
            n_val_chips=len(val),
            chip_size=train.size,
            n_bands=train.n_bands,
            pixel_size_m=_pixel_size_m(train),
            labelled_pixels=int(total / overlap),
            labelled_share=float(total / chip_px) if chip_px else 0.0,
            class_shares=tuple(float(s) for s in shares),
            val_pixels=int(val_px),
            bands=tuple(train.bands or ()),
        )


def auto_settings(profile: DataProfile) -> tuple[dict[str, Any], dict[str, str]]:
    """Settings for a run on data like ``profile``, and why each was chosen."""
    s: dict[str, Any] = {}
    why: dict[str, str] = {}
    size = profile.chip_size

    s["architecture"], s["encoder"] = "Unet", "tu-mobilenetv3_small_100"
    s["arch_kwargs"] = {"decoder_channels": [128, 64, 32, 16, 16]}
    why["encoder"] = "a small encoder (2 M parameters with its decoder) suits small data and CPUs"
    s["pixel_branch"] = 16
    why["pixel_branch"] = "each pixel's own spectrum at full resolution, beside the context"
    s["indices"] = []
    if available_indices(profile.bands):
        why["indices"] = (
            "none: NDVI/NDWI-style indices measured no gain (Landsat 8 over Zion) or a loss "
            "(Sentinel-2 with OSM labels) next to the per-pixel branch; ask for them by name"
        )

    bs = int(np.clip(PIXELS_PER_STEP // (size * size), 4, 16))
    s["batch_size"] = min(bs, max(2, profile.n_chips))
    why["batch_size"] = f"about {PIXELS_PER_STEP // 1024} k pixels per step with {size} px chips"
    per_epoch = max(1, profile.n_chips // s["batch_size"])
    # a few dozen chips are learnt by heart long before 1 500 steps: at least 6 per chip
    min_steps = int(np.clip(6 * profile.n_chips, SMALL_DATA_MIN_STEPS, MIN_STEPS))
    steps = int(np.clip(per_epoch * 60, min_steps, MAX_STEPS))
    # epochs of at least 50 steps, so validation and checkpoints stay cheap on tiny data
    s["steps_per_epoch"] = max(per_epoch, 50)
    s["epochs"] = max(1, math.ceil(steps / s["steps_per_epoch"]))
    why["epochs"] = (
        f"{s['epochs'] * s['steps_per_epoch']} optimiser steps for {profile.n_chips} chips "
        f"(between {min_steps} and {MAX_STEPS}, whatever the chip count)"
    )
    s["lr"], s["weight_decay"], s["schedule"] = 2e-3, 1e-4, "onecycle"
    s["augment"] = AugmentConfig()
    if profile.n_chips < SMALL_DATA_CHIPS:
        s["weight_decay"], s["augment"] = 0.05, SMALL_DATA_AUGMENT
        why["weight_decay"] = why["augment"] = (
            f"small data ({profile.n_chips} chips < {SMALL_DATA_CHIPS}): stronger "
            "regularisation, so the network memorises its few chips later"
        )
    s["ema"] = float(np.clip(1.0 - 20.0 / (s["epochs"] * s["steps_per_epoch"]), 0.99, 0.999))
    why["ema"] = "scores and saves an average of recent weights, not one noisy step's"
    s["loss"], s["class_weights"] = "combo", "bounded"
    why["class_weights"] = "rare classes count more, within [1/4, 4] so they do not flood maps"
    s["normalization"] = "robust"
    s["patience"] = 0
    why["patience"] = "no early stop: the schedule runs to its end and the average is scored"
    s["window"], s["overlap"] = size, size // 4
    why["window"] = "the chip size: validation scores the map at the window users predict with"
    s["val_every"] = validation_interval(profile, s["steps_per_epoch"] * s["batch_size"])
    return s, why


def auto_chip_size(shapes: list[tuple[int, int]], pixel_size_m: float | None) -> int:
    """Chip side for images of ``shapes`` (y, x) at ``pixel_size_m`` (None: a plain pixel
    grid, taken as very high resolution).

    Coarse pixels carry less context per pixel, and small scenes need small chips to be cut
    into enough chips and spatial blocks: 256 px at 2 m or finer, 128 px up to 15 m, 64 px
    beyond, and no more than leaves room for about 256 chips side by side in all the images
    (at least 64 px).
    """
    px = 0.5 if pixel_size_m is None else pixel_size_m
    base = 256 if px <= 2.0 else 128 if px <= 15.0 else 64
    total = sum(h * w for h, w in shapes)
    cap = max(64, 2 ** int(math.log2(max(math.sqrt(total / 256), 1))))
    return int(min(base, cap))


def validation_interval(profile: DataProfile, chips_per_epoch: int) -> int:
    """Epochs between validations so that validating costs about :data:`VALIDATION_SHARE`
    of training: a forward pass over the validation regions (with window overlap) against
    forward and backward passes (about 3x) over an epoch's chips."""
    train_px = chips_per_epoch * profile.chip_size**2
    return max(1, math.ceil(validation_cost_px(profile) / (VALIDATION_SHARE * train_px)))


def validation_cost_px(profile: DataProfile) -> float:
    """What one validation costs, in pixels of training (forward and backward): a forward
    pass (a third of a training step's cost per pixel) over the validation regions, 1.8x for
    the windows' overlap."""
    return 1.8 * profile.val_pixels / 3.0


def bounded_class_weights(
    counts: np.ndarray, *, low: float = 0.25, high: float = 4.0
) -> np.ndarray:
    """Square roots of median-frequency weights, clipped to ``[low, high]``; 0 for absent
    classes. Median-frequency weights themselves reach 10-100 for rare classes, which made
    models paint 11-30 % of a scene with a class covering 4 %."""
    from ._losses import median_frequency_weights

    w = median_frequency_weights(counts)
    seen = w > 0
    w[seen] = np.clip(np.sqrt(w[seen]), low, high)
    return w


def _overlap_factor(chips: Chips) -> float:
    """How many chips cover a covered pixel, on average (1 for a non-overlapping grid)."""
    t = chips.table
    covered = sum(
        union_area(t.loc[t["source"] == s, ["row", "col"]].to_numpy(), chips.size)
        for s in sorted(set(t["source"].tolist()))
    )
    return max(1.0, len(t) * chips.size**2 / max(covered, 1))


def union_area(tops: np.ndarray, size: int) -> int:
    """Pixels covered by squares of side ``size`` at top-left ``(row, col)`` ``tops``,
    counted once (on the grid of the squares' own edges, so any raster size is cheap)."""
    if len(tops) == 0:
        return 0
    edges = [np.unique(np.concatenate([tops[:, k], tops[:, k] + size])) for k in (0, 1)]
    covered = np.zeros((len(edges[0]) - 1, len(edges[1]) - 1), dtype=bool)
    r0, c0 = (np.searchsorted(edges[k], tops[:, k]) for k in (0, 1))
    r1, c1 = (np.searchsorted(edges[k], tops[:, k] + size) for k in (0, 1))
    for a, b, c, d in zip(r0, r1, c0, c1, strict=True):
        covered[a:b, c:d] = True
    heights, widths = np.diff(edges[0]), np.diff(edges[1])
    return int((covered * heights[:, None] * widths[None, :]).sum())


def _pixel_size_m(chips: Chips) -> float | None:
    src = chips.sources[0]
    return None if src.frame.startswith("pixels:") else pixel_size_m(src.image)


def pixel_size_m(image: xr.DataArray) -> float | None:
    """Mean pixel side in metres (degrees taken at 111.32 km); None without a CRS."""
    from ..io._raster import PIXEL_GRID_ATTR

    crs = image.rio.crs
    if crs is None or image.attrs.get(PIXEL_GRID_ATTR):
        return None
    t = image.rio.transform()
    res = (abs(t.a) + abs(t.e)) / 2
    if crs.is_geographic:
        return res * 111_320.0
    return res * float(crs.linear_units_factor[1])
