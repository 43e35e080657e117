"""spatial_split: disjoint, non-overlapping, buffered, deterministic partitions of whole blocks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import xlandcover as xlc
from xlandcover.errors import EmptySplitError, SplitWarning
from xlandcover.training._splits import _gaps, labelled_bounds

from ..conftest import make_image
from .test_chips import make_labels


def grid_chips(h=160, w=192, size=16, stride=16, n_sources=1):
    # sources side by side, 10 km apart (sources at one place would overlap, and the split
    # would rightly drop train chips under test chips)
    imgs = [make_image(h, w, seed=i) for i in range(n_sources)]
    imgs = [img.assign_coords(x=img.x + 10_000.0 * i) for i, img in enumerate(imgs)]
    return xlc.sample_chips(imgs, [make_labels(i) for i in imgs], size=size, stride=stride,
                            groups=[f"g{i}" for i in range(n_sources)])  # fmt: skip


CHIPS = {
    (size, stride): grid_chips(size=size, stride=stride)
    for size, stride in [(16, 16), (16, 8), (24, 16)]
}


def bounds(part):
    return part.table[["minx", "miny", "maxx", "maxy"]].to_numpy()


@pytest.mark.filterwarnings("ignore::xlandcover.errors.SplitWarning")
@settings(max_examples=40, deadline=None)
@given(
    geometry=st.sampled_from(sorted(CHIPS)),
    block=st.sampled_from([320.0, 480.0, 640.0]),
    buffer=st.sampled_from([0.0, 10.0, 160.0]),
    seed=st.integers(0, 10_000),
    fractions=st.sampled_from([(0.7, 0.15, 0.15), (0.5, 0.25, 0.25), (0.8, 0.2, 0.0)]),
)
def test_partitions_are_disjoint_apart_and_deterministic(geometry, block, buffer, seed, fractions):
    chips = CHIPS[geometry]
    try:
        splits = xlc.spatial_split(
            chips, block_size=block, fractions=fractions, buffer=buffer, seed=seed
        )
    except EmptySplitError:
        return  # a buffer may eat a whole small partition; that is reported, not hidden
    ids = [set(p.table["chip"]) for p in splits]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert set().union(*ids) <= set(chips.table["chip"])
    assert len(ids[2]) == 0 if fractions[2] == 0 else len(ids[2]) > 0
    parts = list(splits)
    for a in range(3):
        for b in range(a + 1, 3):
            if len(parts[a]) and len(parts[b]):
                gaps = _gaps(bounds(parts[a]), bounds(parts[b]))
                assert (gaps >= buffer).all() and (gaps >= 0).all()  # never overlapping
    again = xlc.spatial_split(
        chips, block_size=block, fractions=fractions, buffer=buffer, seed=seed
    )
    for p, q in zip(splits, again, strict=True):
        assert p.table["chip"].tolist() == q.table["chip"].tolist()


@settings(max_examples=40, deadline=None)
@given(
    block=st.sampled_from([160.0, 320.0, 480.0]),
    seed=st.integers(0, 10_000),
    fractions=st.sampled_from([(0.7, 0.15, 0.15), (0.6, 0.2, 0.2), (0.34, 0.33, 0.33)]),
)
def test_fractions_are_met_up_to_one_block(block, seed, fractions):
    chips = CHIPS[(16, 16)]  # stride == size: no overlaps, so without buffer nothing is dropped
    splits = xlc.spatial_split(chips, block_size=block, fractions=fractions, seed=seed)
    sizes = np.array([len(p) for p in splits])
    assert sizes.sum() == len(chips)
    blocks = np.floor(chips.table[["cx", "cy"]].to_numpy() / block)
    _, per_block = np.unique(blocks, axis=0, return_counts=True)
    assert (np.abs(sizes - np.array(fractions) * len(chips)) <= 2 * per_block.max()).all()


def test_every_chip_of_a_block_goes_to_one_partition():
    chips = CHIPS[(16, 16)]
    splits = xlc.spatial_split(chips, block_size=480.0, seed=3)
    where = {}
    for name, part in zip(("train", "val", "test"), splits, strict=True):
        for cx, cy in part.table[["cx", "cy"]].to_numpy():
            key = (np.floor(cx / 480.0), np.floor(cy / 480.0))
            assert where.setdefault(key, name) == name
    assert set(splits.assignment["partition"]) == {"train", "val", "test"}


def test_buffer_thins_train_first_and_never_test():
    chips = CHIPS[(16, 16)]
    plain = xlc.spatial_split(chips, block_size=480.0, seed=1)
    buffered = xlc.spatial_split(chips, block_size=480.0, seed=1, buffer=100.0)
    assert len(buffered.test) == len(plain.test)
    assert len(buffered.train) < len(plain.train)
    in_pixels = xlc.spatial_split(chips, block_size=48, units="pixels", seed=1, buffer=10)
    assert len(in_pixels.test) == len(plain.test) and len(in_pixels.train) == len(buffered.train)


def test_group_mode_keeps_whole_groups_and_explicit_assignment():
    chips = grid_chips(64, 64, n_sources=5)
    splits = xlc.spatial_split(chips, by="group", fractions=(0.6, 0.2, 0.2), seed=0)
    for part in splits:
        for g in set(part.table["group"]):
            assert (chips.table["group"] == g).sum() == (part.table["group"] == g).sum()
    fixed = xlc.spatial_split(chips, by="group", assign={"val": ["g1"], "test": ["g4"]})
    assert set(fixed.test.table["group"]) == {"g4"} and set(fixed.val.table["group"]) == {"g1"}
    assert set(fixed.train.table["group"]) == {"g0", "g2", "g3"}


def test_overlapping_sources_in_one_crs_are_kept_apart():
    a = make_image(64, 64)
    b = a.assign_coords(x=a.x + 320.0)  # 32 px east: half of it lies over the east half of a
    chips = xlc.sample_chips([a, b], [make_labels(a), make_labels(b)], size=16, groups="ab")
    with pytest.warns(SplitWarning, match="more than a third of train 8 of 16 chips"):
        splits = xlc.spatial_split(chips, by="group", assign={"test": ["b"]})
    assert splits.dropped == {"train": 8, "val": 0, "test": 0}
    assert len(splits.test) == 16
    assert len(splits.train) == 8 and (splits.train.table["col"] < 32).all()
    with pytest.raises(EmptySplitError, match="train partition lost all its chips: they overlap"):
        east_of_a = chips.subset((chips.table["group"] == "b") | (chips.table["col"] >= 32))
        xlc.spatial_split(east_of_a, by="group", assign={"test": ["b"]})


def test_buffer_warning_recommends_larger_blocks_in_the_splits_units_only():
    # 16 px chips at stride 8 on 10 m pixels; buffer and blocks in pixels. The advice is in
    # pixels (it was in metres, from the buffer read as metres), and it is only given when
    # larger than the blocks in use (on a small scene the recommendation can be smaller)
    chips = grid_chips(size=16, stride=8)
    assert xlc.training.recommend_block_size(chips, buffer=4, units="pixels") == 32.0
    with pytest.warns(
        SplitWarning, match=r"larger blocks \(recommended here: block_size=32 pixels"
    ):
        xlc.spatial_split(chips, block_size=16, units="pixels", buffer=4)
    with pytest.warns(SplitWarning, match="dropped") as record:
        xlc.spatial_split(chips, block_size=48, units="pixels", buffer=4)
    assert not any("larger blocks" in str(w.message) for w in record)


def test_errors_name_the_empty_partition_and_why():
    chips = grid_chips(64, 64, n_sources=2)
    with pytest.raises(EmptySplitError, match="partition got no block: 2 block"):
        xlc.spatial_split(chips, by="group")
    with pytest.raises(EmptySplitError, match="'nope' given for test"):
        xlc.spatial_split(chips, by="group", assign={"test": ["nope"]})
    with pytest.raises(ValueError, match="summing to 1"):
        xlc.spatial_split(chips, block_size=100.0, fractions=(0.5, 0.2, 0.2))
    with pytest.raises(EmptySplitError, match="buffer"):
        xlc.spatial_split(CHIPS[(16, 16)], block_size=480.0, seed=1, buffer=10_000.0)


# --- vector features: by="feature", buffers from labelled pixels ---------------------------------


def feature_chips(n=40, seed=0, size=16, stride=8):
    """Chips over small random boxes (some overlapping) burnt from a vector table."""
    import geopandas as gpd
    import shapely

    rng = np.random.default_rng(seed)
    img = make_image(200, 200)
    cols, rows = rng.uniform(0, 196, n), rng.uniform(0, 196, n)
    sides = rng.uniform(1.5, 6, n)
    boxes = [
        shapely.box(300_000 + 10 * c, 4_100_000 - 10 * (r + s), 300_000 + 10 * (c + s),
                    4_100_000 - 10 * r)
        for c, r, s in zip(cols, rows, sides, strict=True)
    ]  # fmt: skip
    table = gpd.GeoDataFrame({"cover": rng.integers(1, 4, n)}, geometry=boxes, crs=32612)
    labels = xlc.rasterize_labels(table, img.chunk(64), column="cover")
    features = xlc.rasterize_features(table, img.chunk(64))
    return xlc.sample_chips(img, labels, size=size, stride=stride, features=features)


FEATURE_CHIPS = feature_chips()


@pytest.mark.filterwarnings("ignore::xlandcover.errors.SplitWarning")
@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    buffer=st.sampled_from([0.0, 30.0, 80.0]),
    fractions=st.sampled_from([(0.7, 0.15, 0.15), (0.5, 0.25, 0.25), (0.8, 0.0, 0.2)]),
)
def test_by_feature_keeps_every_feature_in_one_partition(seed, buffer, fractions):
    chips = FEATURE_CHIPS
    try:
        splits = xlc.spatial_split(chips, by="feature", fractions=fractions, buffer=buffer,
                                   seed=seed)  # fmt: skip
    except EmptySplitError:
        return
    home: dict[int, str] = {}
    for name, part in zip(("train", "val", "test"), splits, strict=True):
        for ids in part.table["features"]:
            for f in ids:  # no chip of another partition holds any pixel of this feature
                assert home.setdefault(f, name) == name
    parts = list(splits)
    for a in range(3):
        for b in range(a + 1, 3):
            if len(parts[a]) and len(parts[b]):
                la, lb = labelled_bounds(parts[a].table), labelled_bounds(parts[b].table)
                # no chip holds labelled pixels of another partition's chips
                assert (_gaps(bounds(parts[a]), lb) >= 0).all()
                assert (_gaps(la, bounds(parts[b])) >= 0).all()
                assert (_gaps(la, lb) >= buffer).all()
    assert splits.by == "feature" and splits.buffer == buffer


def test_by_feature_groups_features_that_share_a_chip_and_needs_features():
    chips = FEATURE_CHIPS
    splits = xlc.spatial_split(chips, by="feature", seed=0)
    n_groups = len(splits.assignment)
    n_features = len({f for ids in chips.table["features"] for f in ids})
    assert 1 < n_groups < n_features  # near features were joined, far ones were not
    plain = xlc.sample_chips(chips.sources[0].image, chips.sources[0].labels, size=16)
    with pytest.raises(EmptySplitError, match=r"features=xlandcover\.rasterize_features"):
        xlc.spatial_split(plain, by="feature")


def test_buffer_is_measured_between_labelled_pixels():
    """Two 3 px polygons 15 px apart: chips around them touch, their labels do not."""
    import geopandas as gpd
    import shapely

    img = make_image(48, 48)

    def box(col):
        return shapely.box(300_000 + 10 * col, 4_100_000 - 130, 300_000 + 10 * (col + 3),
                           4_100_000 - 100)  # fmt: skip

    table = gpd.GeoDataFrame({"c": [1, 1]}, geometry=[box(10), box(28)], crs=32612)
    chips = xlc.sample_chips(img, xlc.rasterize_labels(table, img, column="c"), size=16,
                             stride=8, features=xlc.rasterize_features(table, img))  # fmt: skip
    assert len(chips) == 8  # rows 0 and 8; columns 0, 8 (first box), 16, 24 (second)
    split = xlc.spatial_split(chips, by="feature", fractions=(0.5, 0.0, 0.5), buffer=140.0)
    # chips of the two partitions overlap (columns 8-24 and 16-32), but hold none of each
    # other's labelled pixels, which are 150 m apart: all are kept
    assert len(split.train) == 4 and len(split.test) == 4 and split.dropped["train"] == 0
    assert (_gaps(bounds(split.train), bounds(split.test)) < 0).any()
    with pytest.raises(EmptySplitError, match="lost all its chips"):
        xlc.spatial_split(chips, by="feature", fractions=(0.5, 0.0, 0.5), buffer=160.0)
