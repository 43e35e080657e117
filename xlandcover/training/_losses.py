"""Segmentation losses by name (smp's where it has them) and median-frequency class weights.

Targets hold class *indices* ``0..K-1`` and :data:`IGNORE` for unlabelled pixels, which every
loss skips.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import TrainingSettingsError, UnknownArchitectureError

if TYPE_CHECKING:
    import torch

#: Target value of unlabelled pixels (also nodata in label rasters).
IGNORE = 255
LOSSES = ("ce", "focal", "dice", "combo")


def median_frequency_weights(counts: np.ndarray) -> np.ndarray:
    """Median-frequency balancing weights (Eigen & Fergus, 2015) from per-chip class counts.

    ``counts`` is ``(n_chips, K)`` labelled pixels. The frequency of class ``c`` is its pixels
    divided by the pixels of the chips where ``c`` appears; its weight is the median frequency
    over classes divided by it. Classes that never appear get weight 0 (nothing to learn).
    """
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    pixels_where_present = (present * counts.sum(axis=1, keepdims=True)).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        freq = counts.sum(axis=0) / pixels_where_present
    seen = np.isfinite(freq) & (freq > 0)
    weights = np.zeros(counts.shape[1])
    if seen.any():
        weights[seen] = np.median(freq[seen]) / freq[seen]
    return weights


def make_loss(
    name: str, *, n_classes: int, class_weights: np.ndarray | None = None
) -> torch.nn.Module:
    """``"ce"`` (weighted cross-entropy), ``"focal"``, ``"dice"`` or ``"combo"`` (CE + Dice)."""
    import torch

    from .._torch import smp

    key = name.lower()
    weight = None
    if class_weights is not None:
        weight = torch.as_tensor(np.asarray(class_weights), dtype=torch.float32)
        if weight.shape != (n_classes,):
            raise TrainingSettingsError(f"{len(weight)} class weights for {n_classes} classes")
    if key == "ce":
        return torch.nn.CrossEntropyLoss(weight=weight, ignore_index=IGNORE)
    if key == "focal":
        return smp.losses.FocalLoss(mode="multiclass", ignore_index=IGNORE)
    if key == "dice":
        return smp.losses.DiceLoss(mode="multiclass", ignore_index=IGNORE)
    if key == "combo":
        return _sum_of(
            torch.nn.CrossEntropyLoss(weight=weight, ignore_index=IGNORE),
            smp.losses.DiceLoss(mode="multiclass", ignore_index=IGNORE),
        )
    raise UnknownArchitectureError(f"unknown loss {name!r}; choose one of {list(LOSSES)}")


def _sum_of(*losses: torch.nn.Module) -> torch.nn.Module:
    import torch

    class SumOfLosses(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.parts = torch.nn.ModuleList(losses)

        def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return sum((loss(logits, target) for loss in self.parts), torch.zeros(()))

    return SumOfLosses()
