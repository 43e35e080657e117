"""Where a batch job runs: an existing Dask cluster, a local one, or Dask-CUDA workers.

``scheduler`` is an existing :class:`distributed.Client`, a scheduler address
(``tcp://host:8786``), ``"local"`` (a :class:`distributed.LocalCluster` sized to the machine,
or ``dask_cuda.LocalCUDACluster`` with one worker per GPU when GPUs and dask-cuda are
present), or ``"inprocess"`` (worker threads in this process: no start-up cost, for small
jobs and tests). distributed and dask-cuda are imported only here, only when used.

Models reach workers as one graph key holding the package's bytes and are built once per
worker process (:mod:`xlandcover.runtime`); :class:`TorchThreads` sets torch's intra-op
threads so that workers x task threads x torch threads does not exceed the cores: forward
passes are serialised per worker, and the other task threads read, normalise and blend.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

import dask
from distributed.diagnostics.plugin import WorkerPlugin

log = logging.getLogger("xlandcover")


@contextlib.contextmanager
def client_for(
    scheduler: Any = "local",
    *,
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
) -> Iterator[Any]:
    """A :class:`distributed.Client` for ``scheduler``; clusters started here stop on exit.

    Parameters
    ----------
    scheduler
        A :class:`distributed.Client`, a scheduler address (``"tcp://host:8786"``),
        ``"local"`` or ``"inprocess"`` (see the module docstring). ``"local"`` on a machine
        with CUDA GPUs and dask-cuda (``pip install "xlandcover[cuda]"``) starts
        ``dask_cuda.LocalCUDACluster`` with one worker per GPU; each builds the model once and
        takes a share of the chunks.
    n_workers
        Workers of a local cluster (one by default; with Dask-CUDA, at most one per GPU).
    threads_per_worker
        Task threads per worker (default: the cores shared among CPU workers;
        :data:`CUDA_THREADS_PER_WORKER` on GPU workers).
    """
    from distributed import Client

    if isinstance(scheduler, Client):
        yield scheduler
        return
    if isinstance(scheduler, str) and "://" in scheduler:
        with Client(scheduler) as client:
            log.info("Connected to %s (dashboard: %s)", scheduler, client.dashboard_link)
            yield client
        return
    if scheduler not in ("local", "inprocess"):
        raise ValueError(
            f"unknown scheduler {scheduler!r}: use 'local', 'inprocess', an address "
            "'tcp://host:8786' or a distributed.Client"
        )
    cuda = (
        _cuda_cluster(n_workers=n_workers, threads_per_worker=threads_per_worker)
        if scheduler == "local"
        else None
    )
    if cuda is not None:
        with cuda as cluster, Client(cluster) as client:
            log.info(
                "Dask-CUDA cluster: %d worker(s), one per GPU (dashboard: %s)",
                len(cluster.workers),
                client.dashboard_link,
            )
            yield client
        return
    from distributed import LocalCluster

    cores = os.cpu_count() or 1
    workers = n_workers or 1
    threads = threads_per_worker or max(1, cores // workers)
    processes = scheduler == "local"
    # Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in workers: glibc then hands the large
    # per-window buffers back to the OS and faults them in again, which made forward passes
    # in worker processes ~1.5x slower here (benchmarks/scaling.py). Keep glibc's default.
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ": environ}),
        LocalCluster(
            n_workers=workers,
            threads_per_worker=threads,
            processes=processes,
            dashboard_address=":0" if processes else None,
        ) as cluster,
        Client(cluster) as client,
    ):
        if processes:
            client.register_plugin(TorchThreads(max(1, cores // workers)))
            log.info(
                "Local cluster: %d worker(s) x %d thread(s) (dashboard: %s)",
                workers,
                threads,
                client.dashboard_link,
            )
        yield client


class TorchThreads(WorkerPlugin):
    """Worker plugin: torch intra-op threads for the forward passes of this worker.

    Register it on clusters you start yourself: ``client.register_plugin(TorchThreads(n))``.
    Dask workers start with ``OMP_NUM_THREADS=1``; without it, forward passes use one core.
    """

    name = "xlandcover-torch-threads"

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def setup(self, worker: Any) -> None:
        from . import runtime

        runtime.TORCH_THREADS = self.threads


#: Task threads of each Dask-CUDA worker: while one chunk's batches run on the GPU (forward
#: passes are serialised per worker), another chunk's pixels are read and its rows written.
CUDA_THREADS_PER_WORKER = 2


def gpu_count() -> int:
    """CUDA GPUs visible to this process (0 without torch's CUDA build or a driver)."""
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _cuda_cluster(*, n_workers: int | None = None, threads_per_worker: int | None = None) -> Any:
    """A ``dask_cuda.LocalCUDACluster`` with one worker process per GPU of this machine (each
    worker sees its own GPU as ``cuda``, builds the model once and gets a share of the chunks),
    or None without GPUs or without dask-cuda (the optional extra ``xlandcover[cuda]``)."""
    count = gpu_count()
    if count == 0:
        return None
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError:
        log.warning(
            "%d GPU(s) here but dask-cuda is not installed: one CPU-style local cluster will "
            "share the first GPU; pip install 'xlandcover[cuda]' for one worker per GPU",
            count,
        )
        return None
    return LocalCUDACluster(
        n_workers=min(n_workers or count, count),
        threads_per_worker=threads_per_worker or CUDA_THREADS_PER_WORKER,
        dashboard_address=":0",
    )
