"""Writing predictions: Zarr and Cloud-Optimized GeoTIFF streamed chunk by chunk, resumable
Zarr jobs, the guards every writer runs (records, locks, staging, publishing), and progress."""

from ._progress import ChunkProgress, mean_pixel_area, rate_text
from ._resume import write_zarr_resumable
from ._targets import MARKER, check_distinct, output_record
from ._write import to_cog, to_zarr

__all__ = [
    "MARKER",
    "ChunkProgress",
    "check_distinct",
    "mean_pixel_area",
    "output_record",
    "rate_text",
    "to_cog",
    "to_zarr",
    "write_zarr_resumable",
]
