"""Train/validation/test splits by spatial blocks, so that held-out chips are held-out places.

Random splits of pixels or overlapping chips leak: neighbouring pixels are nearly identical, so a
model is scored on what it has seen. :func:`spatial_split` assigns whole contiguous blocks (a
square grid anchored at the CRS origin, or user groups such as image tiles) to one partition,
then drops the chips of a lower-priority partition (train < val < test) that overlap or come
closer than ``buffer`` to a chip of another partition. The test set is never thinned.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from .chips import Chips
from .errors import EmptySplitError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Splits:
    """The three partitions; ``assignment`` says which block went where."""

    train: Chips
    val: Chips
    test: Chips
    assignment: pd.DataFrame

    def __iter__(self) -> Iterator[Chips]:
        return iter((self.train, self.val, self.test))

    def summary(self) -> pd.DataFrame:
        """Chips, blocks and labelled pixels per class and partition."""
        rows = {}
        for name, part in zip(SPLITS, self, strict=True):
            counts = part.counts.sum(axis=0) if len(part) else np.zeros(len(part.class_ids))
            rows[name] = {
                "chips": len(part),
                "blocks": int((self.assignment["split"] == name).sum()),
                **{c.name: int(n) for c, n in zip(part.classes, counts, strict=True)},
            }
        return pd.DataFrame(rows).T


def spatial_split(
    chips: Chips,
    *,
    block_size: float | None = None,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    buffer: float = 0.0,
    seed: int = 0,
    by: Literal["block", "group", "source"] = "block",
    units: Literal["crs", "pixels"] = "crs",
    assign: Mapping[str, Sequence[str]] | None = None,
) -> Splits:
    """Split chips into train/val/test by contiguous spatial blocks.

    Parameters
    ----------
    chips
        From :func:`~xlandcover.sample_chips`.
    block_size
        Side of the square blocks (``by="block"``), in CRS units or pixels (``units``). A
        chip belongs to the block holding its centre.
    fractions
        Target shares of chips for train, val and test (summing to 1; a 0 leaves that
        partition empty on purpose). Whole blocks are assigned, in a seeded random order, each
        to the partition furthest below its target.
    buffer
        Chips closer than this (CRS units or pixels) to a chip of another partition are
        dropped, from train first, then val. Chips of different partitions never overlap,
        whatever the buffer.
    by
        ``"block"`` (square grid), ``"group"`` (the ``groups`` given to ``sample_chips``, e.g.
        whole image tiles) or ``"source"`` (each image is a block).
    assign
        Explicit blocks per partition instead of random ones, e.g.
        ``{"val": ["tile-6"], "test": ["tile-7"]}``; unnamed blocks go to train.
    """
    fr = np.asarray(fractions, dtype=float)
    if fr.shape != (3,) or (fr < 0).any() or not np.isclose(fr.sum(), 1.0):
        raise ValueError(f"fractions must be three shares >= 0 summing to 1, got {fractions}")
    if buffer < 0:
        raise ValueError(f"buffer must be >= 0, got {buffer}")
    table = chips.table
    scale = _unit_scale(chips, units)
    blocks = _block_keys(chips, by, None if block_size is None else block_size * scale)
    keys, inverse = np.unique(blocks, return_inverse=True)
    if assign is not None:
        split_of_block = _explicit(keys, assign)
    else:
        sizes = np.bincount(inverse, minlength=len(keys))
        split_of_block = _greedy(sizes, fr, np.random.default_rng(seed))
    for s, name in enumerate(SPLITS):
        if ((assign is None and fr[s] > 0) or (assign and name in assign)) and not (
            split_of_block == s
        ).any():
            raise EmptySplitError(
                f"the {name} partition got no block: {len(keys)} block(s) "
                f"for fractions {tuple(fractions)}. Use a smaller block_size, more data, "
                f"or set its fraction to 0 if you do not want a {name} set"
            )
    split = split_of_block[inverse]
    split = _apply_buffer(table, split, buffer * scale, chips)
    parts = []
    for s, name in enumerate(SPLITS):
        part = chips.subset(split == s)
        wanted = fr[s] > 0 if assign is None else (name == "train" or name in assign)
        if wanted and len(part) == 0:
            raise EmptySplitError(
                f"the {name} partition lost all its chips: they overlap or lie within the "
                f"buffer ({buffer}) of chips of the other partitions. Use a smaller buffer or "
                "larger blocks, or check for rasters covering the same place"
            )
        parts.append(part)
    assignment = pd.DataFrame({"block": keys, "split": [SPLITS[s] for s in split_of_block]}).astype(
        {"block": str}
    )
    return Splits(parts[0], parts[1], parts[2], assignment)


def _unit_scale(chips: Chips, units: str) -> np.ndarray:
    """Per-chip factor turning a distance in ``units`` into CRS units."""
    if units == "crs":
        return np.ones(len(chips.table))
    if units != "pixels":
        raise ValueError(f"units must be 'crs' or 'pixels', got {units!r}")
    res = np.array([max(s.resolution) for s in chips.sources])
    return res[chips.table["source"].to_numpy()]


def _block_keys(chips: Chips, by: str, block_size: np.ndarray | None) -> np.ndarray:
    t = chips.table
    frames = np.array([s.frame for s in chips.sources])[t["source"].to_numpy()]
    if by == "group":
        return t["group"].astype(str).to_numpy()
    if by == "source":
        return t["source"].astype(str).to_numpy()
    if by != "block":
        raise ValueError(f"by must be 'block', 'group' or 'source', got {by!r}")
    if block_size is None or (block_size <= 0).any():
        raise ValueError("by='block' needs a positive block_size")
    bx = np.floor(t["cx"].to_numpy() / block_size).astype(np.int64)
    by_ = np.floor(t["cy"].to_numpy() / block_size).astype(np.int64)
    return np.array([f"{f}|{x}|{y}" for f, x, y in zip(frames, bx, by_, strict=True)])


def _greedy(sizes: np.ndarray, fractions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blocks, in random order, each to the partition furthest below its target share."""
    out = np.zeros(len(sizes), dtype=np.int64)
    have = np.zeros(3)
    total = sizes.sum()
    # the smallest partitions choose first, so a small val/test set is not starved
    for n, b in enumerate(rng.permutation(len(sizes))):
        need = fractions * total - have
        need[fractions == 0] = -np.inf
        if n < 3 and (fractions > 0).sum() > n:
            order = np.argsort(np.where(fractions > 0, fractions, np.inf), kind="stable")
            s = int(order[n])
        else:
            s = int(np.argmax(need))
        out[b] = s
        have[s] += sizes[b]
    return out


def _explicit(keys: np.ndarray, assign: Mapping[str, Sequence[str]]) -> np.ndarray:
    out = np.zeros(len(keys), dtype=np.int64)
    known = set(keys.tolist())
    for name, blocks in assign.items():
        if name not in SPLITS:
            raise ValueError(f"assign keys must be among {SPLITS}, got {name!r}")
        for b in blocks:
            if str(b) not in known:
                raise EmptySplitError(
                    f"block {b!r} given for {name} is not among the blocks {sorted(known)}"
                )
            out[keys == str(b)] = SPLITS.index(name)
    return out


def _apply_buffer(
    table: pd.DataFrame, split: np.ndarray, buffer: np.ndarray, chips: Chips
) -> np.ndarray:
    """Drop (mark -1) chips too close to a chip of a higher-priority partition."""
    split = split.copy()
    frames = np.array([s.frame for s in chips.sources])[table["source"].to_numpy()]
    bounds = table[["minx", "miny", "maxx", "maxy"]].to_numpy()
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
                split[cand[_too_close(bounds[cand], bounds[keepers], buffer[cand])]] = -1
    return split


def _too_close(a: np.ndarray, b: np.ndarray, buffer: np.ndarray, batch: int = 512) -> np.ndarray:
    """For each rectangle of ``a``: is any rectangle of ``b`` closer than its ``buffer``?

    Closer than the buffer, or overlapping (both gaps negative) when the buffer is 0.
    """
    out = np.zeros(len(a), dtype=bool)
    for i in range(0, len(a), batch):
        gap = _gaps(a[i : i + batch], b)
        out[i : i + batch] = (gap < buffer[i : i + batch, None]).any(axis=1)
    return out


def _gaps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Chebyshev gap between every rectangle of ``a`` and of ``b``; < 0 when they overlap."""
    gx = np.maximum(a[:, None, 0] - b[None, :, 2], b[None, :, 0] - a[:, None, 2])
    gy = np.maximum(a[:, None, 1] - b[None, :, 3], b[None, :, 1] - a[:, None, 3])
    return np.maximum(gx, gy)
