import importlib
import itertools
import warnings
from collections import Counter
from importlib import resources

import dask
import numpy as np
import pytest
import rasterio
import rasterio.features
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage

import xlandcover as xlc
from xlandcover.cli import main
from xlandcover.errors import (
    ChunkTooSmallError,
    MinimumMappingUnitError,
    RasterInputError,
    RechunkWarning,
)
from xlandcover.prediction import sieve, sieve_array, sieve_halo

from ..conftest import raise_if_dask_computes

NODATA = 255
NEIGHBOURS = {
    4: [(-1, 0), (1, 0), (0, -1), (0, 1)],
    8: [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx],
}
NEIGHBOURS_STRUCT = {c: ndimage.generate_binary_structure(2, 1 if c == 4 else 2) for c in (4, 8)}
DATA = resources.files("xlandcover") / "data"


def definition(a: np.ndarray, min_size: int, connectivity: int, nodata: int) -> np.ndarray:
    """The sieve's definition, written out pixel by pixel in plain Python (flood fills)."""
    h, w = a.shape
    patch = -np.ones(a.shape, int)
    members: list[list[tuple[int, int]]] = []
    for start in np.ndindex(h, w):
        if a[start] == nodata or patch[start] >= 0:
            continue
        patch[start], todo, pts = len(members), [start], []
        while todo:
            p = todo.pop()
            pts.append(p)
            for dy, dx in NEIGHBOURS[connectivity]:
                q = (p[0] + dy, p[1] + dx)
                if 0 <= q[0] < h and 0 <= q[1] < w and patch[q] < 0 and a[q] == a[start]:
                    patch[q] = len(members)
                    todo.append(q)
        members.append(pts)
    out = a.copy()
    for pts in members:
        if len(pts) >= min_size:
            continue
        border = {
            (y + dy, x + dx)
            for y, x in pts
            for dy, dx in NEIGHBOURS[connectivity]
            if 0 <= y + dy < h
            and 0 <= x + dx < w
            and patch[y + dy, x + dx] >= 0
            and len(members[patch[y + dy, x + dx]]) >= min_size
        }
        if border:
            votes = Counter(int(a[q]) for q in border)
            best = min(votes, key=lambda c: (-votes[c], c))
            for p in pts:
                out[p] = best
    return out


def patches(a: np.ndarray, connectivity: int, nodata: int | None = NODATA):
    """Patch ids (0 for nodata) and the size of each patch id."""
    structure = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    ids = np.zeros(a.shape, int)
    n = 0
    for value in np.unique(a):
        if value == nodata:
            continue
        lab, k = ndimage.label(a == value, structure=structure)
        ids[lab > 0] = lab[lab > 0] + n
        n += k
    sizes = np.bincount(ids.ravel(), minlength=n + 1)
    sizes[0] = 0
    return ids, sizes


def assert_guarantee(before, after, min_size, connectivity, nodata=NODATA):
    """Every patch of the result smaller than min_size is an input patch, unchanged, whose
    border held no pixel that is neither nodata nor small."""
    ids_in, size_in = patches(before, connectivity, nodata)
    ids_out, size_out = patches(after, connectivity, nodata)
    large_in = (before != nodata) & (size_in[ids_in] >= min_size)
    left = 0
    for pid in np.flatnonzero((size_out < min_size) & (np.arange(size_out.size) > 0)):
        where = ids_out == pid
        (source,) = np.unique(ids_in[where])
        assert (ids_in == source).sum() == where.sum()  # exactly one input patch ...
        np.testing.assert_array_equal(after[where], before[where])  # ... kept as it was ...
        grown = ndimage.binary_dilation(where, NEIGHBOURS_STRUCT[connectivity])
        assert not (large_in & grown & ~where).any()  # ... because its border was empty
        left += 1
    return left


def labels_da(a: np.ndarray) -> xr.DataArray:
    return xr.DataArray(a, dims=("y", "x"))


@st.composite
def rasters(draw, max_side=28, classes=4):
    """Label rasters with large patches (blocky) and speckle, some nodata."""
    h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    block = draw(st.integers(1, 6))
    coarse = rng.integers(0, classes, (h // block + 1, w // block + 1))
    a = np.kron(coarse, np.ones((block, block), int))[:h, :w].astype(np.uint8)
    noise = rng.random((h, w)) < draw(st.sampled_from([0.0, 0.1, 0.3, 1.0]))
    a[noise] = rng.integers(0, classes, noise.sum())
    a[rng.random((h, w)) < draw(st.sampled_from([0.0, 0.05, 0.2]))] = NODATA
    return a


def chunking(draw, n):
    cuts = draw(st.lists(st.integers(1, max(n - 1, 1)), max_size=6, unique=True))
    edges = [0, *sorted(c for c in cuts if c < n), n]
    return tuple(b - a for a, b in itertools.pairwise(edges))


# -- the rule, on literal rasters ------------------------------------------------------------


def test_small_island_takes_the_enclosing_class_and_large_patches_stay():
    a = np.full((6, 7), 3, np.uint8)
    a[1, 1] = 5  # 1 px island
    a[3:5, 4:6] = 7  # 4 px patch
    a[0, 6] = 9  # 1 px in a corner
    out = sieve_array(a, 4)
    want = np.full((6, 7), 3, np.uint8)
    want[3:5, 4:6] = 7
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(sieve_array(a, 5), np.full((6, 7), 3, np.uint8))
    assert out.dtype == np.uint8 and a[1, 1] == 5  # input untouched


def test_the_class_with_most_border_pixels_wins_ties_go_to_the_lowest_id():
    a = np.array([[4, 4, 4, 4], [4, 1, 2, 2], [6, 6, 2, 2], [6, 6, 2, 2]], np.uint8)
    # the 1 px patch at (1, 1) has border 4 (above), 4 (left), 2 (right), 6 (below)
    assert sieve_array(a, 4)[1, 1] == 4
    tie = np.array([[5, 5, 5], [5, 1, 3], [3, 3, 3]], np.uint8)
    # border 5, 5 (above, left) and 3, 3 (right, below): a tie, the lowest id wins
    assert sieve_array(tie, 2)[1, 1] == 3
    assert sieve_array(tie[::-1, ::-1], 2)[1, 1] == 3


def test_small_neighbours_do_not_vote():
    a = np.array([[3, 3, 3], [9, 1, 9], [3, 9, 3]], np.uint8)
    # 4-connectivity: each 9 is a 1 px patch, too small to vote: only the 3 above votes for
    # the centre. The 9 below the centre and the 3s beside it are 1 px patches with no large
    # neighbour: they stay (the corner 3s are not connected to the top row).
    out = sieve_array(a, 2)
    np.testing.assert_array_equal(out, [[3, 3, 3], [3, 3, 3], [3, 9, 3]])
    assert assert_guarantee(a, out, 2, 4) == 1


def test_connectivity_decides_what_a_patch_is():
    a = np.full((5, 5), 1, np.uint8)
    a[1, 1] = a[2, 2] = a[3, 3] = 2  # a diagonal line: three 1 px patches, or one of 3 px
    four = sieve_array(a, 3, connectivity=4)
    eight = sieve_array(a, 3, connectivity=8)
    np.testing.assert_array_equal(four, np.full((5, 5), 1, np.uint8))
    np.testing.assert_array_equal(eight, a)


def test_nodata_is_never_filled_and_never_fills():
    a = np.array(
        [
            [255, 255, 255, 1, 1, 1],
            [255, 2, 255, 1, 3, 1],
            [255, 255, 255, 1, 1, 1],
        ],
        np.uint8,
    )
    out = sieve_array(a, 2)
    want = a.copy()
    want[1, 4] = 1  # the island in class 1 is filled; the one in nodata has no border: kept
    np.testing.assert_array_equal(out, want)
    # a 255 block bigger than min_size is still nodata, not a patch that could fill anything
    b = np.array([[255, 255, 255], [255, 4, 7], [255, 255, 255]], np.uint8)
    np.testing.assert_array_equal(sieve_array(b, 2), b)
    c = np.array([[0, 0, 0], [0, 4, 0], [0, 0, 0]], np.uint8)  # other nodata values
    np.testing.assert_array_equal(sieve_array(c, 2, nodata=0), c)
    np.testing.assert_array_equal(sieve_array(c, 2, nodata=None), np.zeros((3, 3), np.uint8))


def test_clusters_of_small_patches_stay_so_the_rule_is_not_idempotent():
    a = np.full((7, 7), 1, np.uint8)
    a[2:5, 2:5] = 2  # a ring of 8 px of class 2 around ...
    a[3, 3] = 3  # ... one pixel of class 3
    once = sieve_array(a, 10)
    want = np.full((7, 7), 1, np.uint8)
    want[3, 3] = 3  # the ring's border is class 1; the centre's border is only the small ring
    np.testing.assert_array_equal(once, want)
    assert assert_guarantee(a, once, 10, 4) == 1
    np.testing.assert_array_equal(sieve_array(once, 10), np.full((7, 7), 1, np.uint8))
    # GDAL merges iteratively (centre into the ring, then both into class 1)
    np.testing.assert_array_equal(rasterio.features.sieve(a, 10), np.full((7, 7), 1, np.uint8))


def test_the_halo_is_tight():
    # min_size=3, halo 4: the first pixel's fate depends on the pixel 4 px away
    assert sieve_halo(3) == 4 and sieve_halo(1) == 0
    filled = sieve_array(np.array([[5, 5, 2, 2, 2]], np.uint8), 3)
    kept = sieve_array(np.array([[5, 5, 2, 2, 7]], np.uint8), 3)
    np.testing.assert_array_equal(filled, [[2, 2, 2, 2, 2]])
    np.testing.assert_array_equal(kept, [[5, 5, 2, 2, 7]])


@pytest.mark.parametrize("min_size", [2, 3, 6])
@pytest.mark.parametrize("far", [2, 7])
def test_chunks_see_the_whole_halo(min_size, far):
    """The last pixel of the first chunk starts a small patch to the right; whether that
    patch is filled depends on the pixel 2 * (min_size - 1) px away, in the next chunk."""
    m, halo = min_size, 2 * (min_size - 1)
    assert sieve_halo(m) == halo
    row = [NODATA] * (halo - 1) + [5] * (m - 1) + [2] * (m - 1) + [far] + [NODATA] * halo
    a = np.array([row], np.uint8)
    assert a[0, halo - 1 + halo] == far  # the first chunk's last pixel, and the one it needs
    lazy = sieve(labels_da(a).chunk({"x": halo}), m, allow_rechunk=False)
    assert len(lazy.chunks[1]) > 1
    want = sieve_array(a, m)
    np.testing.assert_array_equal(lazy.values, want)
    np.testing.assert_array_equal(want, definition(a, m, 4, NODATA))
    assert want[0, halo - 1] == (2 if far == 2 else 5)


# -- properties ------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(a=rasters(), min_size=st.integers(1, 7), connectivity=st.sampled_from([4, 8]))
def test_the_code_matches_the_definition_and_its_guarantee(a, min_size, connectivity):
    out = sieve_array(a, min_size, connectivity=connectivity)
    np.testing.assert_array_equal(out, definition(a, min_size, connectivity, NODATA))
    assert out.dtype == a.dtype
    np.testing.assert_array_equal(out == NODATA, a == NODATA)  # nodata kept, never introduced
    ids, size = patches(a, connectivity)
    changed = out != a
    assert (size[ids][changed] < min_size).all()  # only small patches change
    assert_guarantee(a, out, min_size, connectivity)
    if min_size == 1:
        np.testing.assert_array_equal(out, a)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    a=rasters(max_side=40),
    min_size=st.integers(1, 5),
    connectivity=st.sampled_from([4, 8]),
    data=st.data(),
)
def test_chunking_never_changes_the_sieve(a, min_size, connectivity, data):
    want = sieve(labels_da(a), min_size, connectivity=connectivity).values
    chunks = (chunking(data.draw, a.shape[0]), chunking(data.draw, a.shape[1]))
    lazy_in = labels_da(a).chunk({"y": chunks[0], "x": chunks[1]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RechunkWarning)  # chunks under the halo are merged
        lazy = sieve(lazy_in, min_size, connectivity=connectivity)
    assert isinstance(lazy.data, dask.array.Array)
    halo = sieve_halo(min_size)
    for axis in (0, 1):
        assert len(lazy.chunks[axis]) == 1 or min(lazy.chunks[axis]) >= halo
    got = lazy.compute(scheduler="sync")
    np.testing.assert_array_equal(got.values, want)
    assert got.dtype == np.uint8


def test_chunks_exactly_one_halo_wide_on_speckle():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 3, (60, 60)).astype(np.uint8)  # speckle: patches of all sizes
    a[rng.random(a.shape) < 0.05] = NODATA
    for min_size in (4, 6):  # halos of 6 and 10 px
        halo = sieve_halo(min_size)
        want = sieve_array(a, min_size)
        assert (want != a).sum() > 100
        lazy = sieve(labels_da(a).chunk(halo), min_size, allow_rechunk=False)
        assert lazy.chunks[0][:-1] == (halo,) * (len(lazy.chunks[0]) - 1)
        np.testing.assert_array_equal(lazy.values, want)


# -- agreement with GDAL's sieve (rasterio.features.sieve) where the rule says they agree -----


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    min_size=st.integers(2, 12),
    connectivity=st.sampled_from([4, 8]),
)
def test_islands_enclosed_by_one_large_patch_agree_with_rasterio(seed, min_size, connectivity):
    """Islands in 8x8 cells, one pixel apart at least, some with a small island inside: every
    small patch's border is one patch of at least min_size pixels."""
    rng = np.random.default_rng(seed)
    a = np.ones((48, 56), np.uint8)
    for cy in range(0, 48, 8):
        for cx in range(0, 56, 8):
            h, w = rng.integers(1, 7, 2)
            y, x = cy + 1 + rng.integers(0, 7 - h), cx + 1 + rng.integers(0, 7 - w)
            kind = rng.integers(0, 3)
            if kind == 0:  # a rectangle
                a[y : y + h, x : x + w] = rng.integers(2, 6)
            elif kind == 1:  # a random walk: connected in both connectivities
                py, px, value = cy + 3, cx + 3, rng.integers(2, 6)
                for _ in range(rng.integers(1, 12)):
                    a[py, px] = value
                    dy, dx = NEIGHBOURS[4][rng.integers(0, 4)]
                    py, px = np.clip(py + dy, cy + 1, cy + 6), np.clip(px + dx, cx + 1, cx + 6)
            elif h * w - 1 >= min_size and h >= 3 and w >= 3:  # a small island in a large one
                a[y : y + h, x : x + w] = 2
                a[y + 1 + rng.integers(0, h - 2), x + 1 + rng.integers(0, w - 2)] = 6
    ours = sieve_array(a, min_size, connectivity=connectivity)
    gdal = rasterio.features.sieve(a, min_size, connectivity=connectivity)
    np.testing.assert_array_equal(ours, gdal)
    assert_guarantee(a, ours, min_size, connectivity)


# -- a real map ------------------------------------------------------------------------------


def test_real_nlcd_map_same_for_every_chunking_and_small_patches_gone():
    with resources.as_file(DATA / "zion-landsat8-nlcd-demo.tif") as path:
        labels = xlc.open_raster(path, chunks=None)[0]  # real NLCD, 600 x 700, nodata 0
    assert labels.rio.nodata == 0
    a = labels.values
    _, size = patches(a, 4, nodata=0)
    assert (size[1:] < 9).sum() == 10261  # NLCD is speckled: 10 261 patches under 9 px
    want = labels.landcover.sieve(9)
    assert want.rio.crs.to_epsg() == 32612 and want.rio.transform() == labels.rio.transform()
    assert want.attrs == labels.attrs and want.name == labels.name and want.dtype == np.uint8
    out = want.values
    left = assert_guarantee(a, out, 9, 4, nodata=0)
    _, size_out = patches(out, 4, nodata=0)
    assert left == (size_out[1:] < 9).sum() == 19  # 19 left, inside clusters of small patches
    assert (out != a).sum() == 25_474  # 6 % of the pixels
    for chunks in ({"y": 128, "x": 141}, {"y": 77, "x": 300}, {"y": 600, "x": 64}):
        lazy = sieve(labels.chunk(chunks), 9, allow_rechunk=False)
        np.testing.assert_array_equal(lazy.values, out)


def test_building_the_graph_computes_nothing():
    a = np.random.default_rng(0).integers(0, 4, (200, 150)).astype(np.uint8)
    lazy_in = labels_da(a).chunk({"y": 64, "x": 50})

    with raise_if_dask_computes():
        lazy = lazy_in.landcover.sieve(5, connectivity=8)
    assert lazy.chunks == lazy_in.chunks
    np.testing.assert_array_equal(lazy.values, sieve_array(a, 5, connectivity=8))


def test_cli_predict_min_size_sieves_before_writing(tmp_path, monkeypatch):
    """--min-size wired into `xlandcover predict` (the prediction replaced by a real NLCD map)."""
    predict_module = importlib.import_module("xlandcover.prediction._predict")
    with resources.as_file(DATA / "zion-landsat8-nlcd-demo.tif") as path:
        nlcd = xlc.open_raster(path, chunks=128)[0]
    monkeypatch.setattr(predict_module, "predict", lambda image, model, **kw: nlcd)
    cog = tmp_path / "lc.tif"
    with (
        resources.as_file(DATA / "zion-landsat8-demo.tif") as image,
        resources.as_file(DATA / "demo-zion.xlc") as model,
    ):
        args = ["predict", str(image), "--model", str(model), "--cog", str(cog), "--chunks", "256"]
        assert main([*args, "--min-size", "12"]) == 0
        assert main([*args, "--min-size", "0", "--overwrite"]) == 1  # a clear error, no traceback
    with rasterio.open(cog) as src:
        written = src.read(1)
    np.testing.assert_array_equal(written, sieve_array(nlcd.values, 12, nodata=0))


# -- errors ----------------------------------------------------------------------------------


def test_errors_say_how_to_fix_them():
    a = labels_da(np.ones((20, 20), np.uint8))
    for bad in (0, -3):
        with pytest.raises(MinimumMappingUnitError, match="at least 1 pixel"):
            sieve(a, bad)
    for bad in (2.5, True, "9"):
        with pytest.raises(MinimumMappingUnitError, match="whole number of pixels"):
            sieve(a, bad)
    with pytest.raises(MinimumMappingUnitError, match=r"4 \(pixels sharing an edge\) or 8"):
        sieve(a, 4, connectivity=6)
    with pytest.raises(RasterInputError, match=r"isel\(band=0\)"):
        sieve(xr.concat([a, a], dim="band"), 4)
    one_band = sieve(a.expand_dims("band"), 4)  # a single band is a label raster too
    assert one_band.dims == ("y", "x")
    with pytest.raises(RasterInputError, match="integer class ids"):
        sieve(a.astype(np.float32), 4)
    with pytest.raises(RasterInputError, match=r"xarray\.DataArray"):
        sieve(a.values, 4)
    assert issubclass(MinimumMappingUnitError, ValueError)
    small = a.chunk({"y": 4, "x": 10})  # 4 px chunks < halo 6 for min_size 4
    with pytest.raises(ChunkTooSmallError, match=r"at least 7 px.*smaller min_size"):
        sieve(small, 4, allow_rechunk=False)
    with pytest.warns(RechunkWarning, match=r"2 \* \(min_size - 1\)"):
        merged = sieve(small, 4)
    assert min(merged.chunks[0]) >= 6
    short = labels_da(np.arange(60, dtype=np.uint8).reshape(5, 12) % 3).chunk({"y": 2})
    with pytest.warns(RechunkWarning, match=r"\(2, 2, 1\) -> \(5,\)"):  # axis under the halo
        one = sieve(short, 8)
    assert one.chunks[0] == (5,)
    np.testing.assert_array_equal(one.values, sieve_array(short.values, 8))
