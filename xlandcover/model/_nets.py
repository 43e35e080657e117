"""Network pieces of our own around smp models (internal).

:class:`PixelBranch` adds a per-pixel path to any smp segmentation model: a small stack of 1x1
convolutions over the input bands whose class logits are added to the model's. A context model
(U-Net) sees neighbourhoods through a stride-2 stem and upsampled decoder features; the branch
gives it what makes a per-pixel random forest strong, each pixel's own spectrum at full
resolution, with no downsampling in between. Its last layer starts at zero, so a new model
starts as the plain smp model.
"""

from __future__ import annotations

from typing import Any

from .._torch import torch


class PixelBranch(torch.nn.Module):
    """``base(x) + mlp(x)``: an smp model plus per-pixel logits from 1x1 convolutions
    (one hidden layer of ``width`` channels; kept narrow, because full-resolution layers are
    memory-bound on CPUs: 32 channels in two layers tripled a 256 px U-Net step)."""

    def __init__(self, base: torch.nn.Module, in_channels: int, classes: int, width: int):
        super().__init__()
        self.base = base
        head = torch.nn.Conv2d(width, classes, 1)
        torch.nn.init.zeros_(head.weight)
        assert head.bias is not None
        torch.nn.init.zeros_(head.bias)
        self.pixel = torch.nn.Sequential(
            torch.nn.Conv2d(in_channels, width, 1),
            torch.nn.ReLU(inplace=True),
            head,
        )

    @property
    def encoder(self) -> Any:
        """The base model's encoder (its ``output_stride`` sizes the windows)."""
        return self.base.encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.pixel(x)


class SpectralIndices(torch.nn.Module):
    """Normalised-difference indices of the input bands, appended as channels for ``base``.

    The input is normalised (``(raw - mean) / std`` per band, as the package says); the
    indices are computed from the raw values, ``(a - b) / (a + b)`` clipped to [-1, 1] and
    doubled (about unit spread), so predict computes exactly what training saw.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        base: torch.nn.Module,
        pairs: list[tuple[int, int]],
        mean: list[float],
        std: list[float],
    ) -> None:
        super().__init__()
        self.base = base
        self.pairs = [(int(a), int(b)) for a, b in pairs]
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    @property
    def encoder(self) -> Any:
        return self.base.encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = x * self.std + self.mean
        extra = []
        for a, b in self.pairs:
            num, den = raw[:, a] - raw[:, b], raw[:, a] + raw[:, b]
            nd = torch.where(den.abs() > 1e-6, num / den.abs().clamp_min(1e-6), 0.0)
            extra.append(2.0 * nd.clamp(-1.0, 1.0))
        return self.base(torch.cat([x, torch.stack(extra, dim=1)], dim=1))
