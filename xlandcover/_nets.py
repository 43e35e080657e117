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

from ._torch import torch


class PixelBranch(torch.nn.Module):
    """``base(x) + mlp(x)``: an smp model plus per-pixel logits from 1x1 convolutions."""

    def __init__(self, base: torch.nn.Module, in_channels: int, classes: int, width: int):
        super().__init__()
        self.base = base
        head = torch.nn.Conv2d(width, classes, 1)
        torch.nn.init.zeros_(head.weight)
        assert head.bias is not None
        torch.nn.init.zeros_(head.bias)
        self.pixel = torch.nn.Sequential(
            torch.nn.Conv2d(in_channels, width, 1),
            torch.nn.BatchNorm2d(width),
            torch.nn.ReLU(inplace=True),
            torch.nn.Conv2d(width, width, 1),
            torch.nn.BatchNorm2d(width),
            torch.nn.ReLU(inplace=True),
            head,
        )

    @property
    def encoder(self) -> Any:
        """The base model's encoder (its ``output_stride`` sizes the windows)."""
        return self.base.encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.pixel(x)
