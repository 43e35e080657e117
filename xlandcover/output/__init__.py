"""Writing predictions: Zarr and Cloud-Optimized GeoTIFF streamed chunk by chunk, resumable
Zarr jobs, COG tiles with a VRT mosaic and a STAC catalog, the guards every writer runs
(records, locks, staging, publishing), and progress."""

from ._progress import ChunkProgress, mean_pixel_area, rate_text
from ._resume import write_zarr_resumable
from ._targets import MARKER, check_distinct, output_record
from ._tiles import TILE_SIZE, write_cog_tiles
from ._write import to_cog, to_zarr

__all__ = [
    "MARKER",
    "TILE_SIZE",
    "ChunkProgress",
    "check_distinct",
    "mean_pixel_area",
    "output_record",
    "rate_text",
    "to_cog",
    "to_zarr",
    "write_cog_tiles",
    "write_zarr_resumable",
]
