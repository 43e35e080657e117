"""Segmentation losses by name (smp's where it has them) and median-frequency class weights.

Targets hold class *indices* ``0..K-1`` and ``NODATA_LABEL`` (255) for unlabelled pixels,
which every loss skips.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import TrainingSettingsError, UnknownArchitectureError
from ..model._package import NODATA_LABEL

if TYPE_CHECKING:
    import torch


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


#: A loss by name: ``factory(n_classes=K, weight=tensor or None)`` -> a module taking
#: ``(logits, target)`` that ignores targets equal to ``NODATA_LABEL``.
LossFactory = Callable[..., "torch.nn.Module"]


def _ce(*, n_classes: int, weight: Any) -> torch.nn.Module:
    import torch

    return torch.nn.CrossEntropyLoss(weight=weight, ignore_index=NODATA_LABEL)


def _focal(*, n_classes: int, weight: Any) -> torch.nn.Module:
    from .._torch import smp

    return smp.losses.FocalLoss(mode="multiclass", ignore_index=NODATA_LABEL)


def _dice(*, n_classes: int, weight: Any) -> torch.nn.Module:
    from .._torch import smp

    return smp.losses.DiceLoss(mode="multiclass", ignore_index=NODATA_LABEL)


def _combo(*, n_classes: int, weight: Any) -> torch.nn.Module:
    return _sum_of(_ce(n_classes=n_classes, weight=weight), _dice(n_classes=n_classes, weight=None))


#: The losses ``train(loss=...)`` knows: ``"ce"`` (weighted cross-entropy), ``"focal"``,
#: ``"dice"``, ``"combo"`` (CE + Dice), and any added by :func:`register_loss`.
LOSSES: dict[str, LossFactory] = {"ce": _ce, "focal": _focal, "dice": _dice, "combo": _combo}


def register_loss(name: str, factory: LossFactory, *, replace: bool = False) -> None:
    """Make ``factory`` available as ``train(..., loss=name)`` and ``loss = "name"`` in
    ``[train]``; it is called as ``factory(n_classes=K, weight=class_weights_or_None)`` and
    returns a module taking ``(logits, target)`` that ignores ``NODATA_LABEL`` targets."""
    key = name.lower()
    if key in LOSSES and not replace:
        raise TrainingSettingsError(f"a loss named {name!r} exists; pass replace=True")
    LOSSES[key] = factory


def make_loss(
    name: str, *, n_classes: int, class_weights: np.ndarray | None = None
) -> torch.nn.Module:
    """The loss called ``name`` (see :data:`LOSSES`), with per-class weights if given."""
    import torch

    factory = LOSSES.get(name.lower())
    if factory is None:
        raise UnknownArchitectureError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}")
    weight = None
    if class_weights is not None:
        weight = torch.as_tensor(np.asarray(class_weights), dtype=torch.float32)
        if weight.shape != (n_classes,):
            raise TrainingSettingsError(f"{len(weight)} class weights for {n_classes} classes")
    return factory(n_classes=n_classes, weight=weight)


def _sum_of(*losses: torch.nn.Module) -> torch.nn.Module:
    import torch

    class SumOfLosses(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.parts = torch.nn.ModuleList(losses)

        def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return sum((loss(logits, target) for loss in self.parts), torch.zeros(()))

    return SumOfLosses()
