"""Prediction: the scene-anchored window grid, blending, halo fitting and :func:`predict`
(``map_overlap``), uncertainty layers, and the chunk-independent sieve (minimum mapping
unit)."""

from ._predict import AUTO_CHUNK_WINDOWS, predict
from ._sieve import sieve, sieve_array, sieve_halo
from ._uncertainty import LAYERS, confidence, dequantize, entropy, margin, quantize

__all__ = [
    "AUTO_CHUNK_WINDOWS",
    "LAYERS",
    "confidence",
    "dequantize",
    "entropy",
    "margin",
    "predict",
    "quantize",
    "sieve",
    "sieve_array",
    "sieve_halo",
]
