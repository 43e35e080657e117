"""Graph layers that cull a region of a job without building the whole job's graph."""

from __future__ import annotations

import time

import dask
import dask.array as da
import numpy as np
import pytest

from xlandcover.prediction._graph import cullable_overlap, fill_outside


def _position(n: int, chunk: int) -> da.Array:
    """A lazy (n chunks)² array whose pixels are ``row * width + col`` (no materialised graph)."""
    width = n * chunk

    def block(block_info=None):
        (r0, r1), (c0, c1) = block_info[None]["array-location"]
        return np.arange(r0, r1)[:, None] * width + np.arange(c0, c1)[None, :]

    return da.map_blocks(block, chunks=((chunk,) * n, (chunk,) * n), dtype=np.int64)


def _f(b: np.ndarray) -> np.ndarray:
    return b * 2 + np.roll(b, 1, axis=0)


def _overlapped(n: int, chunk: int = 16) -> da.Array:
    return da.map_overlap(_f, _position(n, chunk), depth=5, boundary="none", trim=True)


def test_cullable_overlap_gives_the_same_result():
    y = _overlapped(6)
    np.testing.assert_array_equal(cullable_overlap(y).compute(), y.compute())


def test_culling_one_chunk_of_a_large_job_builds_only_its_tasks():
    y = cullable_overlap(_overlapped(400))  # 160 000 chunks
    graph = y.__dask_graph__()
    start = time.perf_counter()
    culled = graph.cull({(y.name, 200, 300)})
    assert time.perf_counter() - start < 1.0  # dask's own layer builds every chunk's tasks
    assert len(culled) < 40
    (block,) = dask.get(culled, [(y.name, 200, 300)])
    rows, cols = np.arange(200 * 16 - 5, 201 * 16 + 5), np.arange(300 * 16 - 5, 301 * 16 + 5)
    around = rows[:, None] * 400 * 16 + cols[None, :]
    np.testing.assert_array_equal(block, _f(around)[5:-5, 5:-5])


@pytest.mark.parametrize("fill", [255, np.nan])
def test_fill_outside_never_computes_the_blocks_outside(fill):
    computed: list[tuple[int, int]] = []

    def spy(b, block_info=None):
        computed.append(tuple(block_info[0]["chunk-location"]))
        return b.astype(np.float32)

    x = da.ones((40, 60), chunks=10, dtype=np.float32).map_blocks(spy, dtype=np.float32)
    inside = np.zeros((4, 6), bool)
    inside[1, 2] = inside[3, 5] = True
    out = fill_outside(x, inside, fill).compute(scheduler="sync")
    assert sorted(computed) == [(1, 2), (3, 5)]
    blocks = out.reshape(4, 10, 6, 10).transpose(0, 2, 1, 3)
    assert (blocks[inside] == 1).all()
    np.testing.assert_array_equal(blocks[~inside], np.full((22, 10, 10), fill, np.float32))
