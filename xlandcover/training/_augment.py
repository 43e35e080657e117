"""Remote-sensing augmentations on batches, with kornia.

Geometric transforms (flips, 90-degree rotations) move image and mask together; intensity
transforms (brightness, contrast, channel dropout, blur, cutout) touch the image only. Scale
jitter zooms image and mask together (bilinear for the image, nearest for the mask); where a
zoom-out leaves the chip's edge empty, the image is 0 (the band mean) and the mask is ignored
(:data:`~xlandcover.model.NODATA_LABEL`), so the loss never sees invented labels. Images
are already normalised (zero mean, unit variance per band), so brightness is a shift and
contrast a scale, without clipping to [0, 1], and dropped or erased pixels become 0, the band
mean. Rotations use nearest resampling, so they are exact permutations of pixels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .._deps import import_optional
from ..model._package import NODATA_LABEL

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations run, and how strong (probabilities are per sample)."""

    flips: bool = True
    rot90: bool = True
    brightness: float = 0.1  # additive shift, in band standard deviations
    contrast: float = 0.1  # multiplicative, 1 +- contrast
    channel_dropout: float = 0.1  # probability of zeroing one band
    blur: float = 0.1  # probability of a Gaussian blur (sigma 0.1-1.5 px)
    cutout: float = 0.1  # probability of erasing a rectangle of 2-15 % of the chip
    scale: float = 0.0  # zoom by a factor in [1/(1+scale), 1+scale] (half the samples); 0: off

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Augment:
    """Callable ``(images, masks) -> (images, masks)`` on ``(B, C, H, W)`` / ``(B, H, W)``."""

    def __init__(self, config: AugmentConfig | None = None, *, n_bands: int) -> None:
        K = import_optional("kornia.augmentation", "training augmentation")

        c = config or AugmentConfig()
        ops: list[Any] = []
        if c.flips:
            ops += [K.RandomHorizontalFlip(), K.RandomVerticalFlip()]
        if c.rot90:
            ops.append(K.RandomRotation90(times=(0, 3), resample="nearest", p=1.0))
        if c.brightness > 0:
            b = (1 - c.brightness, 1 + c.brightness)
            ops.append(K.RandomBrightness(b, clip_output=False, p=0.5))
        if c.contrast > 0:
            ops.append(K.RandomContrast((1 - c.contrast, 1 + c.contrast), clip_output=False, p=0.5))
        if c.channel_dropout > 0 and n_bands > 1:
            ops.append(K.RandomChannelDropout(num_drop_channels=1, p=c.channel_dropout))
        if c.scale > 0:
            z = (1 / (1 + c.scale), 1 + c.scale)
            ops.append(K.RandomAffine(degrees=0.0, scale=z, p=0.5))
        if c.blur > 0:
            ops.append(K.RandomGaussianBlur((5, 5), (0.1, 1.5), p=c.blur))
        if c.cutout > 0:
            ops.append(K.RandomErasing(scale=(0.02, 0.15), value=0.0, p=c.cutout))
        self.config = c
        self._seq = K.AugmentationSequential(*ops, data_keys=["input", "mask"]) if ops else None

    def __call__(
        self, images: torch.Tensor, masks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self._seq is None:
            return images, masks
        if not self.config.scale:
            out, m = self._seq(images, masks[:, None])
            return out, m[:, 0].to(masks.dtype)
        import torch

        # labels shifted by one, so what a zoom-out pads (0) reads as ignored after the shift back
        out, m = self._seq(images, masks[:, None].float() + 1)
        m = m[:, 0].round().long() - 1
        return out, torch.where(m < 0, NODATA_LABEL, m).to(masks.dtype)
