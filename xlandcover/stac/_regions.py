"""STAC searched region by region: ``load_stac(..., search_region=N)`` for continental jobs.

A search for a continent returns tens of thousands of items; held by the client and embedded
in every read task, they make the graph as large as the catalog. Here the output grid is fixed
without searching (the area, the CRS and the resolution decide it), and the lazy image is one
graph layer (:class:`RegionSearchLayer`) with two kinds of tasks:

- one **search** per region of ``N x N`` chunks, run on a worker when the region's first chunk
  is computed: the region's footprint in degrees (intersected with the area's polygon, if
  any) is searched with the same arguments as a whole-extent search;
- one **read** per chunk: the region's items whose bbox meets the chunk, read onto the
  chunk's window of the output grid and composited there.

A pixel's value depends only on the items that cover it (a median ignores items with no
observation there; "first" keeps their priority order, which does not depend on the other
items), and every item covering a chunk is in its region's search result, so the pixels are
those of one whole-extent search, at region borders too. Chunks are read once, so the halo
that ``predict`` borrows across a region border is the neighbour's own pixels. The layer
culls without building the tasks of other regions, so the bounded writer
(:mod:`xlandcover.output._resume`) sends one region's searches and reads at a time.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
from dask._task_spec import Task, TaskRef
from dask.highlevelgraph import HighLevelGraph

from ..errors import GraphKeyError, NoItemsError
from ..io._raster import READ_CHUNKS
from ..prediction._graph import LazyLayer
from ._grid import BBox, TargetGrid
from ._presets import Band, StacPreset
from ._search import ItemDict, Modifier, StacSearch, search_items

log = logging.getLogger("xlandcover")


@dataclass(frozen=True)
class RegionRead:
    """Everything a region's search and a chunk's read need (sent with their tasks)."""

    url: str
    preset: StacPreset
    search: StacSearch  # the whole job's search; bbox/intersects are replaced per region
    bands: tuple[Band, ...]
    grid: TargetGrid  # the whole output grid; grid.chunks is the chunk size
    how: str
    resampling: str
    use_mask: bool
    modifier: Modifier | str | None
    timeout: float
    region: int  # chunks per side of a region

    @property
    def numblocks(self) -> tuple[int, int]:
        rows, cols = self.grid.shape
        return -(-rows // self.grid.chunks), -(-cols // self.grid.chunks)

    def window(self, row0: int, row1: int, col0: int, col1: int) -> TargetGrid:
        """Rows ``row0:row1`` and columns ``col0:col1`` of the output grid, as a grid."""
        res, (left, _, _, top) = self.grid.resolution, self.grid.bounds
        bounds = (left + col0 * res, top - row1 * res, left + col1 * res, top - row0 * res)
        # read in pieces of the usual read chunks: a median holds every item's pixels of a
        # piece at once, which for a whole 8192 px chunk would be gigabytes
        size = min(max(row1 - row0, col1 - col0), READ_CHUNKS)
        return TargetGrid(self.grid.epsg, res, bounds, size)

    def block(self, i: int, j: int) -> TargetGrid:
        rows, cols = self.grid.shape
        c = self.grid.chunks
        return self.window(i * c, min((i + 1) * c, rows), j * c, min((j + 1) * c, cols))

    def region_grid(self, r: int, c: int) -> TargetGrid:
        rows, cols = self.grid.shape
        n = self.region * self.grid.chunks
        return self.window(r * n, min((r + 1) * n, rows), c * n, min((c + 1) * n, cols))


def degrees(grid: TargetGrid) -> BBox:
    """The footprint of ``grid`` as ``(west, south, east, north)`` in degrees (densified, so
    it contains the whole footprint)."""
    from rasterio.warp import transform_bounds

    west, south, east, north = transform_bounds(
        f"EPSG:{grid.epsg}", "EPSG:4326", *grid.bounds, densify_pts=21
    )
    return west, south, east, north


def region_items(spec: RegionRead, r: int, c: int) -> list[ItemDict]:
    """The items of region ``(r, c)``, prepared as ``load_stac`` prepares a search's items."""
    from ._load import prepared_items

    box = degrees(spec.region_grid(r, c))
    search = dataclasses.replace(spec.search, bbox=box, intersects=None)
    if spec.search.intersects is not None:
        import shapely.geometry

        shape = shapely.geometry.box(*box) & shapely.geometry.shape(spec.search.intersects)
        if shape.is_empty:
            return []
        search = dataclasses.replace(
            spec.search, bbox=None, intersects=shapely.geometry.mapping(shape)
        )
    try:
        items = search_items(spec.url, spec.preset, search, modifier=spec.modifier,
                             timeout=spec.timeout)  # fmt: skip
    except NoItemsError:
        return []  # sea, or nothing in the dates: the region's pixels are NaN
    return prepared_items(items, spec.preset, list(spec.bands), spec.how, spec.use_mask)


def read_block(items: list[ItemDict], spec: RegionRead, i: int, j: int) -> np.ndarray:
    """Chunk ``(i, j)`` of the composite, ``(band, y, x)`` float32, from its region's items."""
    from ._composite import composite
    from ._load import physical_values

    grid = spec.block(i, j)
    rows, cols = grid.shape
    west, south, east, north = degrees(grid)
    touching = [it for it in items if _meets(it.get("bbox"), (west, south, east, north))]
    if not touching:
        return np.full((len(spec.bands), rows, cols), np.nan, dtype=np.float32)
    values = physical_values(touching, spec.preset, list(spec.bands), grid, spec.resampling,
                             spec.use_mask)  # fmt: skip
    out = composite(values, spec.how).transpose("band", "y", "x")
    block = np.asarray(out.data.compute(scheduler="sync"), dtype=np.float32)
    return block[:, :rows, :cols]


def _meets(bbox: Any, box: BBox) -> bool:
    """Whether an item's bbox (``[w, s, e, n]``, or 3-D) meets ``box``; items without a
    bbox, or across the antimeridian, are kept (their reader decides)."""
    if not bbox or len(bbox) not in (4, 6):
        return True
    w, s, e, n = (bbox[0], bbox[1], bbox[3], bbox[4]) if len(bbox) == 6 else bbox
    if w > e:
        return True
    return not (e < box[0] or w > box[2] or n < box[1] or s > box[3])


class RegionSearchLayer(LazyLayer):
    """The lazy ``(band, y, x)`` image of :class:`RegionRead`: chunk ``(0, i, j)`` reads from
    the search task of its region ``(i // N, j // N)``. Culls without materialising."""

    def __init__(self, name: str, spec: RegionRead) -> None:
        super().__init__()
        self.name, self.items_name, self.spec = name, f"{name}-items", spec

    def _regions(self) -> tuple[int, int]:
        rows, cols = self.spec.numblocks
        n = self.spec.region
        return -(-rows // n), -(-cols // n)

    def __contains__(self, key: object) -> bool:
        if not (isinstance(key, tuple) and key and key[0] in (self.name, self.items_name)):
            return False
        idx = key[1:]
        limits = (1, *self.spec.numblocks) if key[0] == self.name else self._regions()
        return len(idx) == len(limits) and all(
            isinstance(v, int | np.integer) and 0 <= v < n for v, n in zip(idx, limits, strict=True)
        )

    def _task(self, key: tuple[Any, ...]) -> Task:
        if key not in self:
            raise GraphKeyError(key)
        if key[0] == self.items_name:
            return Task(key, region_items, self.spec, int(key[1]), int(key[2]))
        i, j = int(key[2]), int(key[3])
        n = self.spec.region
        items = TaskRef((self.items_name, i // n, j // n))
        return Task(key, read_block, items, self.spec, i, j)

    def _keys(self) -> Iterator[tuple[Any, ...]]:
        for r, c in np.ndindex(*self._regions()):
            yield (self.items_name, r, c)
        for i, j in np.ndindex(*self.spec.numblocks):
            yield (self.name, 0, i, j)

    def __len__(self) -> int:
        return int(np.prod(self._regions()) + np.prod(self.spec.numblocks))


def regional_image(spec: RegionRead) -> da.Array:
    """The lazy ``(band, y, x)`` float32 Dask array of ``spec`` (nothing is searched yet)."""
    from dask.array.core import normalize_chunks
    from dask.base import tokenize

    name = f"xlandcover-stac-regions-{tokenize(spec)}"
    c = spec.grid.chunks
    chunks = normalize_chunks((-1, c, c), (len(spec.bands), *spec.grid.shape))
    graph = HighLevelGraph({name: RegionSearchLayer(name, spec)}, {name: set()})
    return da.Array(graph, name, chunks, meta=np.empty((0, 0, 0), dtype=np.float32))
