"""Graph layers that cull without building the whole job's graph.

A continental job has 10^5 chunks; its graph is millions of tasks, but a region of it needs a
few hundred. Dask's own layers mostly cull lazily (``Blockwise``), except two steps of
``predict``:

- :class:`dask.layers.ArrayOverlapLayer` (the halo exchange of ``map_overlap``) has no
  ``cull`` of its own: culling it for one chunk materialises the halo tasks of every chunk
  (13 s and a dict of 10^6 tasks on the client for 90 000 chunks, measured here).
  :func:`cullable_overlap` swaps it for :class:`CullableOverlapLayer`, which builds the tasks
  of the chunks asked for with dask's own helpers, the same tasks under the same keys.
- the area of interest: chunks outside it are constant nodata blocks that depend on nothing
  (:class:`OutsideFillLayer`), so culling never reaches their pixels or their model runs.

Both that layer and the STAC regions' (:mod:`xlandcover.stac._regions`) are
:class:`LazyLayer` subclasses: tasks made on demand, culled without building the others.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Mapping
from typing import Any

import dask.array as da
import numpy as np
from dask._task_spec import Alias, Task, convert_legacy_graph
from dask.highlevelgraph import HighLevelGraph, Layer, MaterializedLayer
from dask.layers import ArrayOverlapLayer, _expand_keys_around_center, fractional_slice

from ..errors import GraphKeyError


class CullableOverlapLayer(ArrayOverlapLayer):
    """:class:`~dask.layers.ArrayOverlapLayer` whose ``cull`` builds only the needed tasks."""

    @property
    def has_legacy_tasks(self) -> bool:
        return False  # culled layers are converted to task specs (the default reads all tasks)

    def __contains__(self, key: object) -> bool:  # without materialising every task
        names = (f"overlap-{self.token}", f"getitem-{self.token}")
        return isinstance(key, tuple) and bool(key) and key[0] in names and key in self._dict

    def cull(self, keys: set[Any], all_hlg_keys: Any) -> tuple[Layer, Mapping[Any, set[Any]]]:
        from dask.array.core import concatenate_shaped

        overlap_name, getitem_name = f"overlap-{self.token}", f"getitem-{self.token}"
        dims = [len(c) for c in self.chunks]
        legacy: dict[Any, Any] = {}
        sources: set[Any] = set()
        for key in keys:
            if not (isinstance(key, tuple) and key[0] == overlap_name):
                continue
            parts, shape = _expand_keys_around_center(
                (None, *key[1:]), dims=dims, name=getitem_name, axes=self.axes
            )
            legacy[key] = (concatenate_shaped, parts, shape)
            for part in parts:
                if part in legacy:
                    continue
                source = (self.name, *part[1:])
                frac = fractional_slice(source, self.axes)
                if frac == source:
                    sources.add(source)
                    legacy[part] = source
                else:  # (getitem, the neighbour's key, its halo's slices)
                    sources.add(frac[1])
                    legacy[part] = frac
        tasks = convert_legacy_graph(legacy, all_keys=sources | set(legacy))
        deps = {k: set(t.dependencies) for k, t in tasks.items()}
        return MaterializedLayer(tasks), deps


def cullable_overlap(array: da.Array) -> da.Array:
    """``array`` with every ``ArrayOverlapLayer`` of its graph made :class:`CullableOverlapLayer`
    (same keys, same tasks: only culling changes)."""
    graph = array.__dask_graph__()
    assert isinstance(graph, HighLevelGraph)
    layers: dict[str, Layer] = {}
    for name, layer in graph.layers.items():
        if type(layer) is ArrayOverlapLayer:
            new = CullableOverlapLayer(
                name=layer.name,
                axes=layer.axes,
                chunks=layer.chunks,
                numblocks=layer.numblocks,
                token=layer.token,
            )
            new.annotations = layer.annotations
            layers[name] = new
        else:
            layers[name] = layer
    new_graph = HighLevelGraph(layers, graph.dependencies)
    return da.Array(new_graph, array.name, array.chunks, meta=array._meta)


class LazyLayer(Layer):
    """A layer whose tasks are made on demand, so culling it to a few keys never builds the
    others' tasks. Subclasses say which keys they hold (``__contains__``, ``_keys``,
    ``__len__``) and make one key's task (``_task``); the layer protocol is here, once."""

    @property
    def has_legacy_tasks(self) -> bool:
        return False

    def is_materialized(self) -> bool:
        return False

    @abstractmethod
    def _keys(self) -> Iterator[Any]: ...

    @abstractmethod
    def _task(self, key: Any) -> Any: ...

    def __getitem__(self, key: Any) -> Any:
        return self._task(key)

    def __iter__(self) -> Iterator[Any]:
        return self._keys()

    def get_output_keys(self) -> set[Any]:
        return set(self._keys())

    def cull(self, keys: set[Any], all_hlg_keys: Any) -> tuple[Layer, Mapping[Any, set[Any]]]:
        """The tasks of ``keys`` held here, and of the keys of this layer they depend on."""
        tasks: dict[Any, Any] = {}
        todo = [k for k in keys if k in self]
        while todo:
            key = todo.pop()
            if key in tasks:
                continue
            tasks[key] = task = self._task(key)
            todo.extend(dep for dep in task.dependencies if dep not in tasks and dep in self)
        return MaterializedLayer(tasks), {k: set(t.dependencies) for k, t in tasks.items()}


class OutsideFillLayer(LazyLayer):
    """Blocks of ``source`` where ``inside[i, j]``, constant ``fill`` blocks elsewhere.

    The fill blocks depend on nothing, so culling the job for them never reaches the
    source's pixels or the model. ``inside`` is over the last two block axes (y, x).
    """

    def __init__(
        self,
        name: str,
        source: str,
        chunks: tuple[tuple[int, ...], ...],
        inside: np.ndarray,
        fill: Any,
        dtype: np.dtype,
    ) -> None:
        super().__init__()
        self.name, self.source, self.chunks = name, source, chunks
        self.inside, self.fill, self.dtype = inside, fill, np.dtype(dtype)

    def __contains__(self, key: object) -> bool:
        return (
            isinstance(key, tuple)
            and len(key) == len(self.chunks) + 1
            and key[0] == self.name
            and all(
                isinstance(i, int | np.integer) and 0 <= i < len(c)
                for i, c in zip(key[1:], self.chunks, strict=True)
            )
        )

    def _task(self, key: tuple[Any, ...]) -> Any:
        if key not in self:
            raise GraphKeyError(key)
        idx = key[1:]
        if self.inside[idx[-2], idx[-1]]:
            return Alias(key, (self.source, *idx))
        shape = tuple(c[i] for c, i in zip(self.chunks, idx, strict=True))
        return Task(key, np.full, shape, self.fill, self.dtype)

    def _keys(self) -> Iterator[tuple[Any, ...]]:
        for idx in np.ndindex(*(len(c) for c in self.chunks)):
            yield (self.name, *idx)

    def __len__(self) -> int:
        return int(np.prod([len(c) for c in self.chunks]))


def fill_outside(array: da.Array, inside: np.ndarray, fill: Any) -> da.Array:
    """``array`` with the blocks outside ``inside`` (over the y/x block grid) set to ``fill``
    without computing them."""
    from dask.base import tokenize

    name = f"xlandcover-aoi-{tokenize(array.name, inside.tobytes(), inside.shape, fill)}"
    layer = OutsideFillLayer(name, array.name, array.chunks, inside, fill, array.dtype)
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[array])  # type: ignore[list-item]
    return da.Array(graph, name, array.chunks, meta=array._meta)


def inside_chunks(array: da.Array) -> np.ndarray | None:
    """The ``inside`` grid of the area of interest in ``array``'s graph (``None`` without one)."""
    graph = array.__dask_graph__()
    for layer in getattr(graph, "layers", {}).values():
        if isinstance(layer, OutsideFillLayer) and layer.chunks[-2:] == array.chunks[-2:]:
            return layer.inside
    return None
