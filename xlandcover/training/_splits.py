"""Train/validation/test splits by spatial blocks, so that held-out chips are held-out places.

Random splits of pixels or overlapping chips leak: neighbouring pixels are nearly identical, so a
model is scored on what it has seen. :func:`spatial_split` assigns whole contiguous blocks (a
square grid anchored at the CRS origin, user groups such as image tiles, or groups of vector
features such as polygons) to one partition, then drops the chips of a lower-priority partition
(train < val < test) that overlap the labelled pixels of a chip of another partition (on dense
labels: that overlap it) or whose labelled pixels come closer than ``buffer`` to its labelled
pixels. The test set is never thinned.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ..errors import EmptySplitError, SplitWarning
from ._chips import Chips, distinct_counts

#: The three partitions of a split, in order.
PARTITIONS = ("train", "val", "test")


@dataclass(frozen=True)
class Splits:
    """The three partitions; ``assignment`` says which block went where, ``dropped`` how
    many chips of each partition the buffer removed."""

    train: Chips
    val: Chips
    test: Chips
    assignment: pd.DataFrame
    dropped: Mapping[str, int] = field(default_factory=dict)
    block_size: float | None = None
    units: str = ""
    #: How the blocks were made, the buffer and its units ("crs" or "pixels"), for
    #: :func:`held_out`.
    by: str = "block"
    buffer: float = 0.0
    unit_mode: Literal["crs", "pixels"] = "crs"

    def __iter__(self) -> Iterator[Chips]:
        return iter((self.train, self.val, self.test))

    def __repr__(self) -> str:
        parts = ", ".join(
            f"{name} {len(part)} chips ({self.dropped.get(name, 0)} dropped)"
            for name, part in zip(PARTITIONS, self, strict=True)
        )
        return f"<Splits: {parts}; {len(self.assignment)} blocks>"

    def export(self, folder: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the chips of the three partitions as image and label GeoTIFF pairs with one
        GeoParquet index (``partition`` column); see :meth:`Chips.export`."""
        from ._export import export_chips

        parts = [(name, part) for name, part in zip(PARTITIONS, self, strict=True) if len(part)]
        return export_chips(parts, folder, overwrite=overwrite)

    def summary(self) -> pd.DataFrame:
        """Chips kept and dropped by the buffer, blocks, and labelled pixels per class and
        partition, each pixel counted once however many chips cover it."""
        rows = {}
        for name, part in zip(PARTITIONS, self, strict=True):
            counts = distinct_counts(part) if len(part) else np.zeros(len(part.class_ids))
            rows[name] = {
                "chips": len(part),
                "dropped": int(self.dropped.get(name, 0)),
                "blocks": int((self.assignment["partition"] == name).sum()),
                **{c.name: int(n) for c, n in zip(part.classes, counts, strict=True)},
            }
        return pd.DataFrame(rows).T


def spatial_split(
    chips: Chips,
    *,
    block_size: float | Literal["auto"] | None = None,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    buffer: float = 0.0,
    seed: int = 0,
    by: Literal["block", "group", "source", "feature"] = "block",
    units: Literal["crs", "pixels"] = "crs",
    assign: Mapping[str, Sequence[str]] | None = None,
    stratify: bool = True,
) -> Splits:
    """Split chips into train/val/test by contiguous spatial blocks.

    Parameters
    ----------
    chips
        From :func:`~xlandcover.sample_chips`.
    block_size
        Side of the square blocks (``by="block"``), in CRS units or pixels (``units``). A
        chip belongs to the block holding the centre of its labelled pixels (its own centre on
        dense labels), so chips around one small polygon or point share a block. ``"auto"``:
        :func:`recommend_block_size` (blocks several chips and buffers wide, and at least
        about 20 of them).
    fractions
        Target shares of chips for train, val and test (summing to 1; a 0 leaves that
        partition empty on purpose). Whole blocks are assigned, in a seeded random order, each
        to the partition furthest below its target.
    buffer
        Chips whose labelled pixels come closer than this (CRS units or pixels) to the
        labelled pixels of a chip of another partition are dropped, from train first, then
        val. (On dense labels that is the distance between the chips.) Whatever the buffer,
        no chip holds labelled pixels (the bounds of a chip's labelled pixels) of a chip of
        another partition: on dense labels, chips of different partitions never overlap; on
        sparse labels their unlabelled margins may.
    by
        ``"block"`` (square grid), ``"group"`` (the ``groups`` given to ``sample_chips``, e.g.
        whole image tiles), ``"source"`` (each image is a block) or ``"feature"``: every
        vector feature (polygon, point, line) stays in one partition with all its pixels.
        Features that share a chip form one group (a cluster of points, touching polygons),
        and each group is a block, so no chip holds features of two partitions. Needs
        ``sample_chips(..., features=rasterize_features(...))``.
    assign
        Explicit blocks per partition instead of random ones, e.g.
        ``{"val": ["tile-6"], "test": ["tile-7"]}``; unnamed blocks go to train.
    stratify
        Before the shares are filled, every class present in at least two blocks gets a block
        in test and in train (and in val when it is in three), rarest classes first. A class
        present in only one block raises :class:`~xlandcover.errors.EmptySplitError` (it could
        not be both learnt and scored); ``stratify=False`` accepts that.

    Warns (:class:`~xlandcover.errors.SplitWarning`) when the buffer drops more than a third
    of a partition's chips, or a class present in the chips is missing from train or test.
    """
    fr = np.asarray(fractions, dtype=float)
    if fr.shape != (3,) or (fr < 0).any() or not np.isclose(fr.sum(), 1.0):
        raise EmptySplitError(f"fractions must be three shares >= 0 summing to 1, got {fractions}")
    if buffer < 0:
        raise EmptySplitError(f"buffer must be >= 0, got {buffer}")
    table = chips.table
    scale = _unit_scale(chips, units)
    unit_name = _unit_name(chips, units)
    if block_size == "auto":
        block_size = recommend_block_size(chips, buffer=buffer, units=units)
    blocks = _block_keys(chips, by, None if block_size is None else block_size * scale)
    keys, inverse = np.unique(blocks, return_inverse=True)
    if assign is not None:
        split_of_block = _explicit(keys, assign)
    else:
        sizes = np.bincount(inverse, minlength=len(keys))
        presence = None
        if stratify:
            presence = np.zeros((len(keys), len(chips.class_ids)), dtype=bool)
            np.logical_or.at(presence, inverse, chips.counts > 0)
            _check_strata(presence, fr, chips, _blocks_are(by, block_size, unit_name))
        split_of_block = _greedy(sizes, fr, np.random.default_rng(seed), presence)
    for s, name in enumerate(PARTITIONS):
        if ((assign is None and fr[s] > 0) or (assign and name in assign)) and not (
            split_of_block == s
        ).any():
            advice = (
                "Features that share a chip are one group: use smaller chips or a larger "
                "stride, more separate features, or by='block'"
                if by == "feature"
                else f"Use a smaller block_size (it is in {unit_name}; block_size='auto' "
                "suggests one), more data"
            )
            raise EmptySplitError(
                f"the {name} partition got no block: {len(keys)} block(s) "
                f"({_blocks_are(by, block_size, unit_name)}) for fractions {tuple(fractions)}. "
                f"{advice}, or set its fraction to 0 if you do not want a {name} set"
            )
    before = split_of_block[inverse]
    split = _apply_buffer(table, before, buffer * scale, chips)
    parts = []
    dropped = {}
    for s, name in enumerate(PARTITIONS):
        part = chips.subset(split == s)
        dropped[name] = int(((before == s) & (split != s)).sum())
        wanted = fr[s] > 0 if assign is None else (name == "train" or name in assign)
        if wanted and len(part) == 0:
            raise EmptySplitError(
                f"the {name} partition lost all its chips: they overlap or lie within the "
                f"buffer ({buffer} {unit_name}) of chips of the other partitions. Use a "
                "smaller buffer or larger blocks, or check for rasters covering the same place"
            )
        parts.append(part)
    assignment = pd.DataFrame(
        {"block": keys, "partition": [PARTITIONS[s] for s in split_of_block]}
    ).astype({"block": str})
    result = Splits(parts[0], parts[1], parts[2], assignment, dropped,
                    None if block_size is None else float(block_size), unit_name, by,
                    float(buffer), units)  # fmt: skip
    _warn_losses(result, chips, buffer, unit_name, before, by)
    return result


def held_out(splits: Splits, chips: Chips, *, partition: str = "test") -> Chips:
    """The chips of ``chips`` that ``splits`` would put in ``partition``: other labels (e.g. a
    dense reference map) over the same images, scored where the split held data out.

    Train on sparse labels (polygons, points), then score on a dense reference of the held-out
    places: ``chips`` is cut from the reference labels, and a chip is kept when its block (the
    same blocks, groups or images as the split's) went to ``partition``, it overlaps no chip of
    the other partitions, and its labelled pixels keep the split's ``buffer`` from theirs.
    With ``by="feature"`` there are no blocks: every reference chip away from the other
    partitions' chips is kept.

    Raises :class:`~xlandcover.errors.EmptySplitError` when none is left.
    """
    if partition not in PARTITIONS:
        raise EmptySplitError(f"partition must be one of {PARTITIONS}, got {partition!r}")
    target = PARTITIONS.index(partition)
    t = chips.table
    if splits.by == "feature":
        candidate = np.ones(len(t), dtype=bool)
    else:
        scale = _unit_scale(chips, splits.unit_mode)
        size = None if splits.block_size is None else splits.block_size * scale
        keys = _block_keys(chips, splits.by, size)
        assigned = dict(
            zip(splits.assignment["block"], splits.assignment["partition"], strict=True)
        )
        candidate = np.array([assigned.get(str(k)) == partition for k in keys])
    others = [p for s, p in enumerate(splits) if s != target and len(p)]
    if others and candidate.any():
        frames = np.array([s.frame for s in chips.sources])[t["source"].to_numpy()]
        buffer = splits.buffer * _unit_scale(chips, splits.unit_mode)
        bounds = t[["minx", "miny", "maxx", "maxy"]].to_numpy()
        labelled = labelled_bounds(t)
        for part in others:
            pt = part.table
            part_frames = np.array([s.frame for s in part.sources])[pt["source"].to_numpy()]
            part_bounds = pt[["minx", "miny", "maxx", "maxy"]].to_numpy()
            part_labelled = labelled_bounds(pt)
            for frame in np.unique(frames[candidate]):
                mine = np.flatnonzero(candidate & (frames == frame))
                theirs = part_frames == frame
                if not theirs.any():
                    continue
                close = _too_close(bounds[mine], part_bounds[theirs], buffer[mine],
                                   labelled[mine], part_labelled[theirs])  # fmt: skip
                candidate[mine[close]] = False
    if not candidate.any():
        raise EmptySplitError(
            f"no chip of the other labels lies in the {partition} partition of the split (by "
            f"{splits.by!r}) away from the other partitions' chips; check that both labels "
            "cover the same images, or use a smaller buffer"
        )
    return chips.subset(candidate)


def recommend_block_size(
    chips: Chips, *, buffer: float = 0.0, units: Literal["crs", "pixels"] = "crs"
) -> float:
    """A block side (in ``units``) for :func:`spatial_split`: about six chips plus buffers
    wide, so the buffer drops few chips, but small enough for about 20 blocks over the
    chips' extent, so every partition gets several. Rounded to whole chips."""
    res = float(np.mean([max(s.resolution) for s in chips.sources]))
    per_unit = 1.0 if units == "crs" else res
    chip = chips.size * res / per_unit
    wide = 6.0 * (chip + buffer)
    t = chips.table
    area = 0.0
    for _, group in t.groupby("source"):
        area += float((group["maxx"].max() - group["minx"].min()) *
                      (group["maxy"].max() - group["miny"].min()))  # fmt: skip
    many = math.sqrt(area / 20.0) / per_unit
    return float(max(1, round(min(wide, many) / chip)) * chip)


def _blocks_are(by: str, block_size: object, unit_name: str) -> str:
    if by == "block":
        return f"block_size {block_size} {unit_name}"
    return {"feature": "feature groups", "group": "groups", "source": "images"}.get(by, by)


def _check_strata(presence: np.ndarray, fr: np.ndarray, chips: Chips, blocks: str) -> None:
    if fr[2] == 0 or fr[0] == 0:
        return
    lonely = [c.name for c, n in zip(chips.classes, presence.sum(axis=0), strict=True) if n == 1]
    if lonely:
        raise EmptySplitError(
            f"classes {lonely} are each present in one block only ({blocks}), so they cannot "
            "be both in train and in test. Use smaller blocks (block_size='auto' suggests "
            "one) or more features of those classes, more data, declare them unlabelled, or pass "
            "stratify=False to accept classes that are learnt but never scored (or scored but "
            "never learnt)"
        )


def _warn_losses(
    splits: Splits,
    chips: Chips,
    buffer: float,
    unit_name: str,
    before: np.ndarray,
    by: str = "block",
) -> None:
    heavy = [
        f"{name} {splits.dropped[name]} of {int((before == s).sum())}"
        for s, name in enumerate(PARTITIONS)
        if splits.dropped[name] * 3 > (before == s).sum() > 0
    ]
    if heavy:
        larger = ""
        if by == "block":
            # in the split's own units; advised only when larger than the blocks given
            # (on a small scene the recommendation may be smaller, for enough blocks)
            advice = recommend_block_size(chips, buffer=buffer, units=splits.unit_mode)
            if splits.block_size is None or advice > splits.block_size * (1 + 1e-9):
                larger = f"larger blocks (recommended here: block_size={advice:g} {unit_name}), "
        warnings.warn(
            f"chips overlapping or within the buffer ({buffer} {unit_name}) of another "
            f"partition were dropped: more than a third of {', '.join(heavy)} chips. Use "
            f"{larger}smaller chips, a larger stride or a smaller buffer",
            SplitWarning,
            stacklevel=3,
        )
    present = chips.counts.sum(axis=0) > 0
    for name in ("train", "test"):
        part = getattr(splits, name)
        if len(part) == 0:
            continue
        have = part.counts.sum(axis=0) > 0
        missing = [
            c.name for c, p, h in zip(chips.classes, present, have, strict=True) if p and not h
        ]
        if missing:
            warnings.warn(
                f"classes {missing} are in the chips but not in the {name} partition; "
                f"{'the model cannot learn them' if name == 'train' else 'they are not scored'}."
                " Use smaller blocks, a smaller buffer or another seed",
                SplitWarning,
                stacklevel=3,
            )


def _unit_name(chips: Chips, units: str) -> str:
    if units == "pixels":
        return "pixels"
    src = chips.sources[0]
    if src.frame.startswith("pixels:"):
        return "pixels (no CRS)"
    crs = src.image.rio.crs
    if crs.is_geographic:
        return f"degrees ({crs.to_string()}; units='pixels' gives sizes in pixels)"
    unit = crs.linear_units or "CRS units"
    return {"metre": "metres", "meter": "metres"}.get(unit, unit)


def _unit_scale(chips: Chips, units: str) -> np.ndarray:
    """Per-chip factor turning a distance in ``units`` into CRS units."""
    if units == "crs":
        return np.ones(len(chips.table))
    if units != "pixels":
        raise EmptySplitError(f"units must be 'crs' or 'pixels', got {units!r}")
    res = np.array([max(s.resolution) for s in chips.sources])
    return res[chips.table["source"].to_numpy()]


def _block_keys(chips: Chips, by: str, block_size: np.ndarray | None) -> np.ndarray:
    t = chips.table
    frames = np.array([s.frame for s in chips.sources])[t["source"].to_numpy()]
    if by == "group":
        return t["group"].astype(str).to_numpy()
    if by == "source":
        return t["source"].astype(str).to_numpy()
    if by == "feature":
        return _feature_groups(chips, frames)
    if by != "block":
        raise EmptySplitError(f"by must be 'block', 'group', 'source' or 'feature', got {by!r}")
    if block_size is None or (block_size <= 0).any():
        raise EmptySplitError(
            "by='block' needs a positive block_size (block_size='auto' suggests one)"
        )
    # the centre of the chip's labelled pixels (the chip's centre on dense labels): chips
    # around one small polygon or point then fall in one block, however they straddle it
    lab = labelled_bounds(t)
    cx, cy = (lab[:, 0] + lab[:, 2]) / 2, (lab[:, 1] + lab[:, 3]) / 2
    bx = np.floor(cx / block_size).astype(np.int64)
    by_ = np.floor(cy / block_size).astype(np.int64)
    return np.array([f"{f}|{x}|{y}" for f, x, y in zip(frames, bx, by_, strict=True)])


def _feature_groups(chips: Chips, frames: np.ndarray) -> np.ndarray:
    """Per chip, the key of its feature group: features that share a chip are joined
    (union-find), so every chip's features are in one group. Features are told apart by frame
    (CRS) and id, so one vector file burnt onto several images of a CRS stays one feature."""
    t = chips.table
    if "features" not in t:
        raise EmptySplitError(
            "by='feature' needs the features of each chip: sample_chips(image, labels, ..., "
            "features=xlandcover.rasterize_features(vector, like=image)) (in a TOML "
            "configuration: vector labels get them)"
        )
    parent: dict[tuple[str, int], tuple[str, int]] = {}

    def find(a: tuple[str, int]) -> tuple[str, int]:
        parent.setdefault(a, a)
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    members = [
        [(str(f), int(i)) for i in ids] for f, ids in zip(frames, t["features"], strict=True)
    ]
    for chip, nodes in enumerate(members):
        if not nodes:
            raise EmptySplitError(
                f"chip {int(t['chip'].iloc[chip])} holds labelled pixels but no feature; the "
                "feature rasters must come from the same table and options as the labels"
            )
        root = find(nodes[0])
        for other in nodes[1:]:
            r = find(other)
            if r != root:
                parent[r] = root
    keys = [find(nodes[0]) for nodes in members]
    return np.array([f"{frame}|feature-group-{i}" for frame, i in keys])


def _greedy(
    sizes: np.ndarray,
    fractions: np.ndarray,
    rng: np.random.Generator,
    presence: np.ndarray | None = None,
) -> np.ndarray:
    """Blocks, in random order, each to the partition furthest below its target share.

    With ``presence`` (blocks x classes), first every class gets a block in test, train and
    val (in that order, as far as it has blocks), rarest classes first.
    """
    out = np.full(len(sizes), -1, dtype=np.int64)
    have = np.zeros(3)
    total = sizes.sum()
    order = rng.permutation(len(sizes))

    def give(b: int, s: int) -> None:
        out[b] = s
        have[s] += sizes[b]

    if presence is not None:
        targets = [s for s in (2, 0, 1) if fractions[s] > 0]
        for c in np.argsort(presence.sum(axis=0), kind="stable"):
            if not presence[:, c].any():
                continue
            for s in targets:
                if (out[presence[:, c]] == s).any():
                    continue
                free = [b for b in order if out[b] < 0 and presence[b, c]]
                if free:
                    give(int(free[0]), s)
    # the smallest partitions choose first, so a small val/test set is not starved
    by_size = np.argsort(np.where(fractions > 0, fractions, np.inf), kind="stable")
    for s in by_size[: int((fractions > 0).sum())]:
        if not (out == s).any():
            free = [b for b in order if out[b] < 0]
            if free:
                give(int(free[0]), int(s))
    for b in order:
        if out[b] >= 0:
            continue
        need = fractions * total - have
        need[fractions == 0] = -np.inf
        give(int(b), int(np.argmax(need)))
    return out


def _explicit(keys: np.ndarray, assign: Mapping[str, Sequence[str]]) -> np.ndarray:
    out = np.zeros(len(keys), dtype=np.int64)
    known = set(keys.tolist())
    for name, blocks in assign.items():
        if name not in PARTITIONS:
            raise EmptySplitError(f"assign keys must be among {PARTITIONS}, got {name!r}")
        for b in blocks:
            if str(b) not in known:
                raise EmptySplitError(
                    f"block {b!r} given for {name} is not among the blocks {sorted(known)}"
                )
            out[keys == str(b)] = PARTITIONS.index(name)
    return out


def _apply_buffer(
    table: pd.DataFrame, split: np.ndarray, buffer: np.ndarray, chips: Chips
) -> np.ndarray:
    """Drop (mark -1) chips too close to a chip of a higher-priority partition."""
    split = split.copy()
    frames = np.array([s.frame for s in chips.sources])[table["source"].to_numpy()]
    bounds = table[["minx", "miny", "maxx", "maxy"]].to_numpy()
    labelled = labelled_bounds(table)
    for frame in np.unique(frames):
        in_frame = np.flatnonzero(frames == frame)
        for high in (2, 1):  # test keeps everything, val yields to test, train to both
            keepers = in_frame[split[in_frame] == high]
            if len(keepers) == 0:
                continue
            for low in range(high):
                cand = in_frame[split[in_frame] == low]
                if len(cand) == 0:
                    continue
                close = _too_close(bounds[cand], bounds[keepers], buffer[cand],
                                   labelled[cand], labelled[keepers])  # fmt: skip
                split[cand[close]] = -1
    return split


def labelled_bounds(table: pd.DataFrame) -> np.ndarray:
    """``(n, 4)`` bounds of each chip's labelled pixels (the chip's own where unknown)."""
    bounds = table[["minx", "miny", "maxx", "maxy"]].to_numpy(dtype=np.float64)
    if "lminx" not in table:
        return bounds
    lab = table[["lminx", "lminy", "lmaxx", "lmaxy"]].to_numpy(dtype=np.float64)
    return np.where(np.isnan(lab), bounds, lab)


def _too_close(
    a: np.ndarray,
    b: np.ndarray,
    buffer: np.ndarray,
    a_labelled: np.ndarray | None = None,
    b_labelled: np.ndarray | None = None,
    batch: int = 512,
) -> np.ndarray:
    """For each chip (rectangle) of ``a``: does it overlap the labelled pixels (their bounds;
    the rectangle itself by default) of a chip of ``b``, or ``b`` its labelled pixels, or do
    the two chips' labelled pixels come closer than its ``buffer``? On dense labels: do the
    chips overlap or come closer than the buffer."""
    a_lab = a if a_labelled is None else a_labelled
    b_lab = b if b_labelled is None else b_labelled
    out = np.zeros(len(a), dtype=bool)
    for i in range(0, len(a), batch):
        part = slice(i, i + batch)
        overlap = (_gaps(a[part], b_lab) < 0) | (_gaps(a_lab[part], b) < 0)
        near = _gaps(a_lab[part], b_lab) < buffer[part, None]
        out[part] = (overlap | near).any(axis=1)
    return out


def _gaps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Chebyshev gap between every rectangle of ``a`` and of ``b``; < 0 when they overlap."""
    gx = np.maximum(a[:, None, 0] - b[None, :, 2], b[None, :, 0] - a[:, None, 2])
    gy = np.maximum(a[:, None, 1] - b[None, :, 3], b[None, :, 1] - a[:, None, 3])
    return np.maximum(gx, gy)
